//! Message templates: one file per kind under `notifier/templates/`
//! (`<kind>.toml`, with `[email] subject/text/html` and `[push] title/body`),
//! compiled in with `include_str!` and filled by a tiny renderer: `{{name}}`
//! is replaced by the value of `name`; in HTML the value is escaped. A
//! placeholder without a value is an error (caught by a unit test for every
//! shipped template), never an empty hole in a buyer's email.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::channel::Message;

/// The values a template may name (`buyer_name`, `product_title`, `price`, …).
pub type Values = BTreeMap<&'static str, String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub email: EmailTemplate,
    pub push: PushTemplate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTemplate {
    pub title: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no template for {0}")]
    UnknownKind(String),
    #[error("template {kind}: {reason}")]
    Unreadable { kind: &'static str, reason: String },
    #[error("placeholder {{{{{0}}}}} has no value")]
    MissingValue(String),
    #[error("an unclosed placeholder")]
    Unclosed,
}

/// The shipped templates, by event kind.
const FILES: &[(&str, &str)] = &[
    ("order.paid", include_str!("../templates/order.paid.toml")),
    ("order.payment_failed", include_str!("../templates/order.payment_failed.toml")),
    ("order.refunded", include_str!("../templates/order.refunded.toml")),
    ("auction.won", include_str!("../templates/auction.won.toml")),
    ("bid.outbid", include_str!("../templates/bid.outbid.toml")),
    ("order.payment_due", include_str!("../templates/order.payment_due.toml")),
    ("order.lapsed", include_str!("../templates/order.lapsed.toml")),
    ("claim.expiring", include_str!("../templates/claim.expiring.toml")),
    ("auction.ending_soon", include_str!("../templates/auction.ending_soon.toml")),
    ("sale.started", include_str!("../templates/sale.started.toml")),
];

/// Every shipped template, parsed once at start (a broken file fails the
/// start, and the unit tests, not a delivery).
#[derive(Debug, Clone)]
pub struct Templates {
    by_kind: BTreeMap<&'static str, Template>,
}

impl Templates {
    pub fn load() -> Result<Self, TemplateError> {
        let mut by_kind = BTreeMap::new();
        for (kind, text) in FILES {
            let template: Template =
                toml::from_str(text).map_err(|e| TemplateError::Unreadable { kind, reason: e.to_string() })?;
            by_kind.insert(*kind, template);
        }
        Ok(Self { by_kind })
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_kind.keys().copied()
    }

    fn get(&self, kind: &str) -> Result<&Template, TemplateError> {
        self.by_kind.get(kind).ok_or_else(|| TemplateError::UnknownKind(kind.to_owned()))
    }

    pub fn email(&self, kind: &str, values: &Values) -> Result<Message, TemplateError> {
        let t = &self.get(kind)?.email;
        Ok(Message::Email {
            subject: render(t.subject.trim(), values, Escape::None)?,
            text: render(t.text.trim_start(), values, Escape::None)?,
            html: render(t.html.trim_start(), values, Escape::Html)?,
        })
    }

    /// A push message's title and body; the caller sets data, collapse key,
    /// priority and time to live.
    pub fn push(&self, kind: &str, values: &Values) -> Result<(String, String), TemplateError> {
        let t = &self.get(kind)?.push;
        Ok((render(t.title.trim(), values, Escape::None)?, render(t.body.trim(), values, Escape::None)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    None,
    Html,
}

/// Replaces every `{{name}}` (spaces inside the braces allowed) with its value.
pub fn render(template: &str, values: &Values, escape: Escape) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| TemplateError::MissingValue(name.to_owned()))?;
        match escape {
            Escape::None => out.push_str(value),
            Escape::Html => html_escape(value, &mut out),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn html_escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        [
            ("buyer_name", "Ada <Lovelace>"),
            ("product_title", "Sneakers & Socks"),
            ("price", "19.99 USD"),
            ("order_id", "ord_1"),
            ("order_url", "https://gavel.example/orders/ord_1"),
            ("auction_url", "https://gavel.example/auctions/auc_1"),
            ("due_at", "2026-12-01 12:00 UTC"),
            ("ends_at", "2026-12-01 12:00 UTC"),
            ("min_next_bid", "21.00 USD"),
            ("sale_url", "https://gavel.example/sales/sale_1"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    #[test]
    fn placeholders_are_filled_and_html_values_escaped() {
        let v = values();
        assert_eq!(render("Hi {{buyer_name}}!", &v, Escape::None).ok().as_deref(), Some("Hi Ada <Lovelace>!"));
        assert_eq!(
            render("<p>{{ product_title }}</p>", &v, Escape::Html).ok().as_deref(),
            Some("<p>Sneakers &amp; Socks</p>")
        );
        assert_eq!(render("no placeholders", &v, Escape::Html).ok().as_deref(), Some("no placeholders"));
    }

    #[test]
    fn a_placeholder_without_a_value_or_unclosed_is_an_error() {
        let v = values();
        assert_eq!(render("{{nope}}", &v, Escape::None), Err(TemplateError::MissingValue("nope".into())));
        assert_eq!(render("{{price", &v, Escape::None), Err(TemplateError::Unclosed));
    }

    #[test]
    fn every_shipped_template_parses_and_renders_with_the_documented_values() {
        let templates = Templates::load().expect("the shipped templates parse");
        assert_eq!(templates.kinds().count(), FILES.len());
        for kind in templates.kinds() {
            let Ok(Message::Email { subject, text, html }) = templates.email(kind, &values()) else {
                panic!("{kind}: email renders");
            };
            assert!(!subject.is_empty() && !subject.contains("{{"), "{kind}: {subject}");
            assert!(text.contains("Ada <Lovelace>") && !text.contains("{{"), "{kind}: {text}");
            assert!(html.contains("Ada &lt;Lovelace&gt;") && !html.contains("{{"), "{kind}: {html}");
            let (title, body) = templates.push(kind, &values()).expect("push renders");
            assert!(!title.is_empty() && !body.contains("{{"), "{kind}: {body}");
        }
        assert!(matches!(templates.email("sale.exploded", &values()), Err(TemplateError::UnknownKind(_))));
    }
}
