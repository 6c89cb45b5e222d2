//! What a hostile client can try (issue 9): widen its authorization (`acl`), make the broker
//! hold more than its flags allow (`resources`), stall a shard with topics and subscriptions
//! (`topics`).

mod acl;
mod resources;
mod topics;
