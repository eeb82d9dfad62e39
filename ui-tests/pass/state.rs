//! `State<T>` parameters: destructured, by value, several types, and
//! declared as the handler's requirements for the runtime's start check.
use std::sync::Arc;

use nats_trace_runtime::prelude::*;

#[derive(Clone)]
struct Db {
    pool: Arc<Vec<String>>,
}

#[derive(Clone)]
struct Config {
    greeting: String,
}

#[nats_subscriber(subject = "state.greet")]
async fn greet(name: String, State(config): State<Config>, db: State<Db>) -> String {
    format!("{} {name} ({} rows)", config.greeting, db.pool.len())
}

#[nats_subscriber(subject = "state.optional")]
async fn optional(_body: (), db: Option<State<Db>>) {
    let _ = db.map(|State(db)| db.pool.len());
}

fn main() {
    let handlers = nats_trace_runtime::registered_handlers();
    let greet = handlers.iter().find(|h| h.subject() == "state.greet").unwrap();
    assert_eq!(
        greet.requirements().state_names(),
        vec![std::any::type_name::<Config>(), std::any::type_name::<Db>()]
    );
    let _ = nats_trace_runtime::runtime::builder()
        .state(Config { greeting: "hi".into() })
        .state(Db { pool: Arc::new(Vec::new()) });
}
