//! Scale-out (issue 17), sans-IO: how a node's topics, filters and interest look on the NATS
//! route plane between nodes. The NATS client and the node's wiring are not built yet.

pub mod interest;
pub mod subject;
