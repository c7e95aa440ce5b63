//! A real SMTP server for tests: Python's `aiosmtpd` (PyPI, installed by `.ci/run`) with its
//! `Mailbox` handler, which stores every message it accepts in a Maildir. Each sink listens on
//! a port of its own and is stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    /// `smtp://127.0.0.1:<port>`.
    pub url: String,
    maildir: tempfile_dir::TempDir,
    child: Child,
}

impl SmtpSink {
    /// Starts a sink, or `None` (outside CI) when `python3 -m aiosmtpd` is not installed.
    pub fn start() -> Option<Self> {
        let maildir = tempfile_dir::TempDir::new();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("its address").port()
        };
        let spawned = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path.join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return crate::unavailable(&format!("python3 for aiosmtpd: {e}")),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut why = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut why);
                }
                return crate::unavailable(&format!("aiosmtpd exited ({status}): {why}"));
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        Some(Self {
            url: format!("smtp://127.0.0.1:{port}"),
            maildir,
            child,
        })
    }

    /// Every message received so far, raw (headers and body), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path.join("mail").join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read_to_string(path).ok())
            .collect()
    }

    /// Waits up to 10 s until `count` messages have arrived, and returns them.
    pub fn wait_for(&self, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= count || started.elapsed() > Duration::from_secs(10) {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop (std only; the testkit keeps its dependencies few).
mod tempfile_dir {
    pub struct TempDir {
        pub path: std::path::PathBuf,
    }

    impl TempDir {
        pub fn new() -> Self {
            let path = std::env::temp_dir()
                .join(format!("authsome-smtp-{}", uuid::Uuid::now_v7().simple()));
            std::fs::create_dir_all(&path).expect("a temp dir");
            Self { path }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
