//! HAProxy started by a test (Debian's `haproxy`, installed by the test command).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::raw::LONG;
use super::unique;

/// A running HAProxy; killed when dropped.
pub struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Haproxy {
    /// Starts HAProxy with `config` and waits until it listens on `front`.
    pub fn start(config: &str, front: u16) -> Haproxy {
        let path = std::env::temp_dir().join(format!("{}.cfg", unique("haproxy")));
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("haproxy: {e}: run scripts/test.sh (it installs haproxy)"));
        let proxy = Haproxy(child);
        let deadline = Instant::now() + LONG;
        while TcpStream::connect(("127.0.0.1", front)).is_err() {
            assert!(Instant::now() < deadline, "haproxy does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }
}
