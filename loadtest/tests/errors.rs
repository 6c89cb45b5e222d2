//! Without a broker the harness fails fast, non-zero, and says why.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, load};

#[test]
fn unreachable_broker_is_a_clear_error() {
    let port = free_port(); // nothing listens there any more
    for args in [
        &["fanin", "--duration", "1"][..],
        &["conn", "--clients", "10"],
        &["sub"],
    ] {
        let t = Instant::now();
        let out = load(port, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            err.contains(&format!("cannot connect to broker at 127.0.0.1:{port}"))
                && err.contains("is the broker running"),
            "{args:?}: unclear error: {err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn bad_flags_are_refused() {
    let out = load(1, &["fanin", "--qos", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--qos"));
}
