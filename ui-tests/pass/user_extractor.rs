//! An extractor of the user's own, reading a header and state, with a
//! rejection of its own.
use nats_trace_runtime::prelude::*;

#[derive(Clone)]
struct Tenants {
    known: Vec<String>,
}

struct Tenant(String);

#[derive(Debug)]
enum TenantRejection {
    Missing,
    Unknown(String),
}

impl IntoFailure for TenantRejection {
    fn into_failure(self) -> Failure {
        match self {
            TenantRejection::Missing => Failure::bad_request("the Tenant header is missing"),
            TenantRejection::Unknown(t) => Failure::service(403, format!("unknown tenant {t}")).reject(),
        }
    }
}

impl FromMessageParts for Tenant {
    type Rejection = TenantRejection;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, TenantRejection> {
        let tenant = ctx.header("Tenant").ok_or(TenantRejection::Missing)?;
        let tenants = ctx.state::<Tenants>().expect("declared in requirements");
        if !tenants.known.iter().any(|t| t == tenant) {
            return Err(TenantRejection::Unknown(tenant.to_string()));
        }
        Ok(Tenant(tenant.to_string()))
    }

    fn requirements(requirements: &mut nats_trace_runtime::extract::Requirements) {
        requirements.state::<Tenants>();
    }
}

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[nats_subscriber(subject = "tenant.orders")]
async fn store(tenant: Tenant, order: Order) -> String {
    format!("{}:{}", tenant.0, order.id)
}

fn main() {
    let handlers = nats_trace_runtime::registered_handlers();
    assert_eq!(
        handlers[0].requirements().state_names(),
        vec![std::any::type_name::<Tenants>()]
    );
    assert!(handlers[0].replies());
}
