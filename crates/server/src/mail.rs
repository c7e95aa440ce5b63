//! The control plane's mail, delivered over SMTP (`AUTHSOME_SMTP_URL`): `smtp://host:port`
//! (STARTTLS when the server offers it; add `?tls=required` to insist), `smtps://host:port`
//! (TLS from the first byte), with `user:password@` when the relay needs them.

use authsome_control::mail::{Mail, Mailer};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Which setting of a mailer is wrong.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("not an SMTP URL: {0}")]
    Url(String),
    #[error("`{0}` is not a sender address")]
    Sender(String),
}

impl SmtpMailer {
    /// A mailer for the relay at `url`, sending as `from` (`Name <address>` or an address).
    pub fn new(url: &str, from: &str) -> Result<Self, MailSetupError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailSetupError::Url(e.to_string()))?
            .build();
        let from = from
            .parse()
            .map_err(|_| MailSetupError::Sender(from.to_owned()))?;
        Ok(Self { transport, from })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), String> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("not a recipient address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .body(mail.text)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| authsome_domain::error_chain(&e))
    }
}
