//! Stripe's API as the checkout saga sees it, spoken to through async-stripe,
//! behind a circuit breaker.
//!
//! Every answer is sorted into what the saga can act on: a definite success, a
//! definite failure (a decline, or a request Stripe refused without charging),
//! or *unknown* (a timeout, a lost answer, a 5xx, a 409 for a request still in
//! flight) — which is never taken for a failure, because Stripe may have
//! charged. Every write carries the idempotency key recorded with the attempt.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use gavel_domain::breaker::{Breaker, Unavailable};
use gavel_domain::ids::{MerchantId, OrderId, PaymentId};
use gavel_domain::payments::{IntentFacts, Payment};
use stripe_core::PaymentIntentStatus;
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
    CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, RetrievePaymentIntent, SearchPaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_types::Currency;

/// Where Stripe is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `https://api.stripe.com/`, or a stand-in's base.
    pub api_base: String,
    pub secret_key: String,
    /// How long one call may take before its outcome counts as unknown.
    pub timeout: Duration,
    /// Consecutive transport failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    pub breaker_cooldown: Duration,
}

/// What became of a charge, as far as the provider has told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        provider_id: String,
    },
    /// Definitely not charged.
    Failed {
        provider_id: Option<String>,
        code: String,
        message: String,
    },
    /// Not known yet: ask again later.
    Unknown {
        provider_id: Option<String>,
        reason: String,
    },
}

/// What the charge is for (the metadata by which it can be found again).
#[derive(Debug, Clone, Copy)]
pub struct ChargeFor<'a> {
    pub payment: &'a Payment,
    pub order: OrderId,
    /// Whose sale or auction it pays for (reconciliation scopes by it).
    pub merchant: MerchantId,
}

#[derive(Clone)]
pub struct Gateway {
    pub(super) client: Client,
    breaker: Arc<Breaker>,
}

/// The metadata key that names our payment attempt on Stripe's objects.
pub const PAYMENT_KEY: &str = "gavel_payment_id";
/// The metadata key that names the order a charge pays for.
pub const ORDER_KEY: &str = "gavel_order_id";
/// The metadata key that names the merchant whose order it is.
pub const MERCHANT_KEY: &str = "gavel_merchant_id";

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Result<Self, String> {
        let mut base = config.api_base.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = ClientBuilder::new(&config.secret_key)
            .url(base)
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("stripe client: {e}"))?;
        let breaker = Breaker::new("stripe", config.breaker_failures.max(1), config.breaker_cooldown);
        Ok(Self { client, breaker: Arc::new(breaker) })
    }

    /// `Err` while the breaker is open and cooling down; checkout answers 503
    /// without touching the hold. Takes no probe slot.
    pub fn check(&self) -> Result<(), Unavailable> {
        self.breaker.check()
    }

    /// Like [`Gateway::check`], but when the cooldown is over this caller
    /// becomes the one probe; used right before a call.
    pub fn admit(&self) -> Result<(), Unavailable> {
        self.breaker.admit()
    }

    /// Creates and confirms the attempt's PaymentIntent, with its idempotency
    /// key: sent twice, it charges once.
    pub async fn charge(&self, what: ChargeFor<'_>) -> Outcome {
        let p = what.payment;
        let metadata = HashMap::from([
            (PAYMENT_KEY.to_owned(), p.id.to_string()),
            (ORDER_KEY.to_owned(), what.order.to_string()),
            (MERCHANT_KEY.to_owned(), what.merchant.to_string()),
        ]);
        // Every currency Gavel accepts is one Stripe settles; should one not
        // be, nothing is sent and nothing charged: a definite failure, never
        // a charge in some other currency.
        let currency = match Currency::from_str(p.amount.currency().code()) {
            Ok(Currency::Unknown(code)) => {
                tracing::error!(payment = %p.id, currency = %code, "a currency async-stripe does not know");
                return Outcome::Failed {
                    provider_id: None,
                    code: "unsupported_currency".into(),
                    message: format!("{code} is not a currency the payment provider accepts"),
                };
            }
            Ok(known) => known,
        };
        let redirects = CreatePaymentIntentAutomaticPaymentMethods {
            allow_redirects: Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never),
            enabled: true,
        };
        let request = CreatePaymentIntent::new(p.amount.minor(), currency)
            .payment_method(p.payment_method.as_str())
            .confirm(true)
            .automatic_payment_methods(redirects)
            .metadata(metadata);
        let strategy = match idempotent(&p.idempotency_key) {
            Ok(s) => s,
            Err(reason) => return Outcome::Unknown { provider_id: None, reason },
        };
        let answer = request.customize().request_strategy(strategy).send(&self.client).await;
        self.classify(answer.map(answer_of))
    }

    /// Looks the attempt up at the provider: by its PaymentIntent id when we
    /// know it, else by the attempt id in the metadata. `Ok(None)`: Stripe has
    /// no such payment (the call never reached it).
    pub async fn find(&self, payment: &Payment) -> Result<Option<Outcome>, String> {
        let found = match &payment.provider_id {
            Some(id) => RetrievePaymentIntent::new(id.as_str()).send(&self.client).await.map(Some),
            None => {
                let query = format!("metadata['{PAYMENT_KEY}']:'{}'", payment.id);
                SearchPaymentIntent::new(query).send(&self.client).await.map(|list| list.data.into_iter().next())
            }
        };
        self.found(found).map(|pi| pi.map(|pi| self.classify(Ok(answer_of(pi)))))
    }

    /// Retrieves the PaymentIntent `id` (named by a webhook event): what it
    /// says about itself and what it means for its attempt. `Ok(None)`: Stripe
    /// has no such PaymentIntent (an id not shaped like Stripe's is not sent).
    pub async fn retrieve(&self, id: &str) -> Result<Option<(IntentFacts, Outcome)>, String> {
        if !is_intent_id(id) {
            return Ok(None);
        }
        let found = match RetrievePaymentIntent::new(id).send(&self.client).await {
            Err(StripeError::Stripe(err, 404))
                if err.code.as_ref().is_some_and(|c| c.as_str() == "resource_missing") =>
            {
                Ok(None)
            }
            other => other.map(Some),
        };
        self.found(found).map(|pi| {
            pi.map(|pi| {
                let facts = facts_of(&pi);
                (facts, self.classify(Ok(answer_of(pi))))
            })
        })
    }

    /// Tells the breaker how a lookup went.
    fn found<T>(&self, answer: Result<Option<T>, StripeError>) -> Result<Option<T>, String> {
        match answer {
            Ok(found) => {
                self.breaker.record(true);
                Ok(found)
            }
            Err(err) => {
                self.breaker.record(!is_transport_failure(&err));
                Err(err.to_string())
            }
        }
    }

    /// Refunds a succeeded payment in full; the key makes a retry refund once.
    /// Returns Stripe's refund id.
    pub async fn refund(&self, payment: &Payment, provider_id: &str) -> Result<String, String> {
        let metadata = HashMap::from([(PAYMENT_KEY.to_owned(), payment.id.to_string())]);
        let strategy = idempotent(&format!("refund:{}", payment.id))?;
        let answer = CreateRefund::new()
            .payment_intent(provider_id)
            .metadata(metadata)
            .customize()
            .request_strategy(strategy)
            .send(&self.client)
            .await;
        self.breaker.record(answer.as_ref().is_ok_or_definite());
        answer.map(|r| r.id.to_string()).map_err(|e| e.to_string())
    }

    fn classify(&self, answer: Result<Answer, StripeError>) -> Outcome {
        self.breaker.record(answer.as_ref().is_ok_or_definite());
        match answer {
            Ok((id, PaymentIntentStatus::Succeeded, _)) => Outcome::Succeeded { provider_id: id },
            Ok((id, PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::Canceled, error)) => {
                let (code, message) = error
                    .map(|e| describe(&e))
                    .unwrap_or_else(|| ("payment_failed".to_owned(), "the payment method was not accepted".to_owned()));
                Outcome::Failed { provider_id: Some(id), code, message }
            }
            Ok((id, PaymentIntentStatus::RequiresAction, _)) => Outcome::Failed {
                provider_id: Some(id),
                code: "authentication_required".into(),
                message: "the card needs the buyer to authenticate, which this checkout does not support".into(),
            },
            Ok((id, status, _)) => {
                Outcome::Unknown { provider_id: Some(id), reason: format!("the payment is {}", status.as_str()) }
            }
            Err(StripeError::Stripe(err, status)) if is_definite(status, &err) => {
                let (code, message) = describe(&err);
                let provider_id = err.payment_intent.as_ref().map(|pi| pi.id.to_string());
                Outcome::Failed { provider_id, code, message }
            }
            Err(err) => Outcome::Unknown { provider_id: None, reason: err.to_string() },
        }
    }
}

/// Shaped like Stripe's `pi_…` ids: only such an id goes into a request path.
pub fn is_intent_id(id: &str) -> bool {
    id.len() <= 255
        && id
            .strip_prefix("pi_")
            .is_some_and(|tail| !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_alphanumeric()))
}

type Answer = (String, PaymentIntentStatus, Option<Box<stripe_shared::ApiErrors>>);

pub(super) fn answer_of(pi: stripe_shared::PaymentIntent) -> Answer {
    (pi.id.to_string(), pi.status, pi.last_payment_error)
}

/// What a PaymentIntent says about itself.
pub(super) fn facts_of(pi: &stripe_shared::PaymentIntent) -> IntentFacts {
    IntentFacts {
        id: pi.id.to_string(),
        amount: pi.amount,
        currency: pi.currency.to_string(),
        payment: payment_of(&pi.metadata),
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, String> {
    IdempotencyKey::new(key).map(RequestStrategy::Idempotent).map_err(|e| format!("idempotency key: {e}"))
}

/// A 4xx other than 409 (a request with this key still in flight), 429 (rate
/// limited) and an idempotency error (the key is bound to another request,
/// which may have charged) means Stripe refused the request: nothing was charged.
fn is_definite(status: u16, err: &stripe_shared::ApiErrors) -> bool {
    (400..500).contains(&status)
        && status != 409
        && status != 429
        && !matches!(err.type_, stripe_shared::ApiErrorsType::IdempotencyError)
}

fn is_transport_failure(err: &StripeError) -> bool {
    match err {
        StripeError::Stripe(_, status) => *status >= 500 || *status == 429,
        StripeError::Timeout | StripeError::ClientError(_) | StripeError::JSONDeserialize(_) => true,
        StripeError::ConfigError(_) => false,
    }
}

trait Definite {
    /// The provider answered (whatever it said): the breaker's notion of health.
    fn is_ok_or_definite(&self) -> bool;
}

impl<T> Definite for Result<&T, &StripeError> {
    fn is_ok_or_definite(&self) -> bool {
        match self {
            Ok(_) => true,
            Err(err) => !is_transport_failure(err),
        }
    }
}

pub(super) fn describe(err: &stripe_shared::ApiErrors) -> (String, String) {
    let code = err
        .decline_code
        .clone()
        .or_else(|| err.code.as_ref().map(|c| c.as_str().to_owned()))
        .unwrap_or_else(|| "payment_failed".to_owned());
    let message = err.message.clone().unwrap_or_else(|| "the payment was refused".to_owned());
    (code, message)
}

/// Ids in Stripe's metadata name our payment attempt.
fn payment_of(metadata: &HashMap<String, String>) -> Option<PaymentId> {
    metadata.get(PAYMENT_KEY).and_then(|id| id.parse().ok())
}
