//! Stripe's webhook deliveries: the signature checked over the raw body, the
//! event read into what Gavel acts on ([`ProviderEvent`]). What the checkout
//! saga then does with an event is `checkout::provider_events`' business.

use gavel_domain::payments::IntentFacts;
use gavel_domain::stripe_events;

use super::client::{describe, facts_of};

/// A Stripe event about a PaymentIntent's outcome, its signature verified.
#[derive(Debug, Clone)]
pub enum ProviderEvent {
    PaymentSucceeded { intent: IntentFacts },
    PaymentFailed { intent: IntentFacts, code: String, message: String },
}

impl ProviderEvent {
    /// The PaymentIntent the event is about, as the event describes it.
    pub fn intent(&self) -> &IntentFacts {
        match self {
            Self::PaymentSucceeded { intent } | Self::PaymentFailed { intent, .. } => intent,
        }
    }
}

/// A webhook delivery whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedEvent {
    /// Stripe's `evt_…`; for a body without a readable id, a digest of it.
    pub id: String,
    /// The event's `type`; `unparseable` when the body has none.
    pub kind: String,
    pub content: Content,
}

/// What a signed event says, as far as Gavel acts on it.
#[derive(Debug, Clone)]
pub enum Content {
    /// It says something about a PaymentIntent's outcome.
    Payment(ProviderEvent),
    /// A type Gavel does not act on.
    Unhandled,
    /// Signed, but async-stripe cannot read it (why).
    Unreadable(String),
}

/// Why a webhook delivery was refused: wrong secret, malformed header, or a
/// timestamp more than 5 minutes off. (A signed body that cannot be read is
/// not refused: Stripe would redeliver it for days and then disable the
/// endpoint.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

/// Verifies `Stripe-Signature` over the raw body (async-stripe's check: HMAC
/// of `t.payload`, ±300 s, before it parses anything) and reads the event.
pub fn verify_event(payload: &str, signature: &str, secret: &str) -> Result<VerifiedEvent, Rejected> {
    use stripe_webhook::{EventObject, Webhook, WebhookError};
    let event = match Webhook::construct_event(payload, signature, secret) {
        Ok(event) => event,
        // async-stripe checks the signature first: a parse error is about a signed body.
        Err(WebhookError::BadParse(why)) => return Ok(unreadable(payload, why)),
        Err(other) => return Err(Rejected(other.to_string())),
    };
    let intent_failure = |pi: &stripe_shared::PaymentIntent| {
        pi.last_payment_error
            .as_deref()
            .map(describe)
            .unwrap_or_else(|| ("payment_failed".to_owned(), "the payment failed".to_owned()))
    };
    let content = match &event.data.object {
        EventObject::PaymentIntentSucceeded(pi) => {
            Content::Payment(ProviderEvent::PaymentSucceeded { intent: facts_of(pi) })
        }
        EventObject::PaymentIntentPaymentFailed(pi) => {
            let (code, message) = intent_failure(pi);
            Content::Payment(ProviderEvent::PaymentFailed { intent: facts_of(pi), code, message })
        }
        _ => Content::Unhandled,
    };
    Ok(VerifiedEvent { id: event.id.to_string(), kind: event.type_.as_str().to_owned(), content })
}

/// A signed body async-stripe cannot read, named by its own `id` and `type`
/// when it has them.
fn unreadable(payload: &str, why: String) -> VerifiedEvent {
    let json: Option<serde_json::Value> = serde_json::from_str(payload).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= 255)
            .map(str::to_owned)
    };
    VerifiedEvent {
        id: field("id").unwrap_or_else(|| stripe_events::digest_id(payload.as_bytes())),
        kind: field("type").unwrap_or_else(|| "unparseable".to_owned()),
        content: Content::Unreadable(why),
    }
}
