//! A local AWS for tests: `moto_server` (PyPI `moto[server]`, installed by `.ci/run`), speaking
//! the real wire protocols (KMS's JSON 1.1 with SigV4 among them). Each server listens on a
//! port of its own, holds its own keys, and is stopped when dropped.

use std::process::{Child, Command};

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
        let (url, child) = crate::serve_on_a_port("moto_server", |port| {
            let mut command = Command::new("moto_server");
            command
                .args(["-H", "127.0.0.1", "-p"])
                .arg(port.to_string());
            command
        })?;
        Some(Self { url, child })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
