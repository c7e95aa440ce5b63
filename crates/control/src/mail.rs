//! The control plane's outgoing email: what to say to whom. How it is delivered (SMTP) is the
//! server's adapter behind [`Mailer`]; without one, what would have been mailed is for the
//! operator to relay (the server log, or a platform operator's answer).

use async_trait::async_trait;

/// One plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Delivers mail (`AUTHSOME_SMTP_URL`).
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `mail`; the error says why it could not be handed to the mail server.
    async fn send(&self, mail: Mail) -> Result<(), String>;
}
