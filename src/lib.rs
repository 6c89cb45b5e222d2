//! ringmq: a thread-per-core MQTT broker. `protocol` is the sans-IO codec.

pub mod protocol;
