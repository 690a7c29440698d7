//! E-mail over SMTP (lettre): the same rendered title and lines as the chat robots, as a text
//! and an HTML part.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tocsin_config::collector::{EmailConfig, EmailTls, MessageTemplate};

use tocsin_alerting::Payload;

use super::{Channel, DeliveryError, Sending};

pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: crate::template::Templates,
}

impl Mailer {
    pub(super) fn new(c: &EmailConfig, template: &MessageTemplate) -> Result<Self, String> {
        let builder = match c.tls {
            EmailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
            EmailTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
                .map_err(|e| e.to_string())?,
            EmailTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| e.to_string())?
            }
        };
        let mut builder = builder.port(c.port).timeout(Some(c.timeout));
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("address {a:?}: {e}"))
        };
        Ok(Mailer {
            transport: builder.build(),
            from: parse(&c.from)?,
            to: c.to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
            templates: crate::template::Templates::new(c.locale, template),
        })
    }

    async fn send_message(&self, n: &Payload) -> Result<(), DeliveryError> {
        let (title, lines) = self.templates.render(n).map_err(DeliveryError::Message)?;
        let text = format!("{title}\n\n{}\n", lines.join("\n"));
        let html = format!(
            "<html><body><h3>{}</h3><ul>{}</ul></body></html>",
            escape(&title),
            lines
                .iter()
                .map(|l| format!("<li>{}</li>", escape(l)))
                .collect::<String>()
        );
        self.mail(title, text, html).await
    }

    async fn mail(&self, title: String, text: String, html: String) -> Result<(), DeliveryError> {
        let mut b = Message::builder().from(self.from.clone()).subject(title);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::Message(e.to_string()))?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Transport(e.to_string()))
    }
}

impl Channel for Mailer {
    fn send<'a>(&'a self, _raw: &'a str, n: &'a Payload, _id: i64) -> Sending<'a> {
        Box::pin(self.send_message(n))
    }

    /// The report's Markdown as the text part, its HTML as the HTML part.
    fn send_report<'a>(
        &'a self,
        _raw: &'a str,
        r: &'a tocsin_reports::Report,
        _id: i64,
    ) -> Sending<'a> {
        Box::pin(self.mail(r.title.clone(), r.markdown.clone(), r.html.clone()))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
