use std::rc::Rc;

use nats_trace_runtime::prelude::*;

#[derive(Clone)]
struct Cache(Rc<Vec<u8>>);

#[nats_subscriber(subject = "orders.created")]
async fn store(_body: (), _cache: State<Cache>) {}

fn main() {}
