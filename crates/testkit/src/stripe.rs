//! A local Stripe for tests: `localstripe` (PyPI, installed by `.ci/run`), which speaks
//! Stripe's API (customers, plans, subscriptions, invoices) and signs its webhooks with
//! Stripe's scheme. Each server listens on a port of its own, keeps its objects in memory, and
//! is stopped when dropped.

use std::process::{Child, Command};

pub struct LocalStripe {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
}

impl LocalStripe {
    /// Starts a server, or `None` (outside CI) when `localstripe` is not installed.
    pub fn start() -> Option<Self> {
        let python = std::env::var("AUTHSOME_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let (url, child) = crate::serve_on_a_port("localstripe", |port| {
            let mut command = Command::new(&python);
            command
                .args(["-m", "localstripe", "--port"])
                .arg(port.to_string());
            command
        })?;
        Some(Self { url, child })
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
