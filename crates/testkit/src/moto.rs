//! A local AWS for tests: `moto_server` (PyPI `moto[server]`, installed by `.ci/run`), speaking
//! the real wire protocols (KMS's JSON 1.1 with SigV4 among them). Each server listens on a
//! port of its own, holds its own keys, and is stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
}

/// Credentials moto accepts (any), for tests to sign with.
pub const ACCESS_KEY_ID: &str = "AKIDAUTHSOMETEST";
pub const SECRET_ACCESS_KEY: &str = "authsome-test-secret";

impl Moto {
    /// Starts a server, or `None` (outside CI) when `moto_server` is not installed.
    pub fn start() -> Option<Self> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("its address").port()
        };
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return crate::unavailable(&format!("moto_server: {e}")),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return crate::unavailable(&format!("moto_server exited ({status})"));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
