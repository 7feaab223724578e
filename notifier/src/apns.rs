//! APNs: Apple's push service, over HTTP/2 to `{APNS_ENDPOINT}/3/device/{token}`.
//!
//! a2 builds the payload (`aps.alert` with title and body, the custom data at
//! the top level) and the request options (priority, push type, collapse id);
//! a2 0.10 fixes Apple's hosts and keeps its JWT signer private, so the
//! transport ([`crate::http`]) and the provider token are ours: an ES256 JWT
//! (`{"alg":"ES256","kid":KEY_ID}.{"iss":TEAM_ID,"iat":…}`) signed with the
//! `.p8` key by ring, cached and renewed after 50 minutes (Apple refuses
//! tokens older than an hour and throttles renewals more often than every 20
//! minutes).
//!
//! Construct with [`ApnsChannel::from_config`] when [`ApnsConfig::is_configured`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use a2::request::notification::{CollapseId, NotificationBuilder, NotificationOptions, Priority, PushType};
use a2::request::payload::PayloadLike;
use a2::{DefaultNotificationBuilder, ErrorBody, ErrorReason};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde::Deserialize;

use crate::channel::{Address, Channel, ChannelKind, Message, SendError, Sent};
use crate::http::{self, HttpClient, NoAnswer, Versions};

/// Apple's production host.
pub const PRODUCTION_ENDPOINT: &str = "https://api.push.apple.com";

/// A provider token is renewed when it is this old.
const TOKEN_TTL: Duration = Duration::from_secs(50 * 60);

/// `[apns]` (`APNS_KEY_FILE`, `APNS_KEY_ID`, `APNS_TEAM_ID`, `APNS_TOPIC`, `APNS_ENDPOINT`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` signing key (PKCS#8 PEM, P-256). Unset: no APNs channel.
    pub key_file: Option<PathBuf>,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com` (production), `https://api.sandbox.push.apple.com`,
    /// or `http://host:port` for a stand-in (HTTP/2 with prior knowledge).
    pub endpoint: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            endpoint: PRODUCTION_ENDPOINT.to_owned(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
        }
    }
}

impl ApnsConfig {
    /// Whether APNs is configured at all (a key file is named).
    pub fn is_configured(&self) -> bool {
        self.key_file.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }
}

/// Why the channel could not be built; names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ApnsSetupError {
    #[error("APNS_KEY_FILE is not set")]
    NoKeyFile,
    #[error("APNS_KEY_FILE {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("APNS_ENDPOINT {0:?} must be an http:// or https:// URL")]
    Endpoint(String),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

struct ProviderToken {
    jwt: String,
    issued: Instant,
}

/// The APNs channel: one pooled HTTP/2 connection per endpoint, multiplexed.
pub struct ApnsChannel {
    client: HttpClient,
    endpoint: String,
    topic: String,
    key_id: String,
    team_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    token: Mutex<Option<ProviderToken>>,
    request_timeout: Duration,
}

impl ApnsChannel {
    pub fn from_config(config: &ApnsConfig) -> Result<Self, ApnsSetupError> {
        let path = config.key_file.as_ref().filter(|p| !p.as_os_str().is_empty()).ok_or(ApnsSetupError::NoKeyFile)?;
        let key_error = |reason: String| ApnsSetupError::Key { path: path.display().to_string(), reason };
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
        let key = Self::key_from_pem(&pem).map_err(key_error)?;
        for (name, value) in
            [("APNS_KEY_ID", &config.key_id), ("APNS_TEAM_ID", &config.team_id), ("APNS_TOPIC", &config.topic)]
        {
            if value.trim().is_empty() {
                return Err(ApnsSetupError::Missing(name));
            }
        }
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ApnsSetupError::Endpoint(config.endpoint.clone()));
        }
        Ok(Self {
            client: http::client(Versions::Http2Only, Duration::from_millis(config.connect_timeout_ms))?,
            endpoint,
            topic: config.topic.clone(),
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            key,
            rng: SystemRandom::new(),
            token: Mutex::new(None),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        })
    }

    fn key_from_pem(pem: &str) -> Result<EcdsaKeyPair, String> {
        let der = http::pem_der(pem, "PRIVATE KEY").ok_or("not a PEM \"PRIVATE KEY\" (PKCS#8) file")?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))
    }

    /// The cached provider token, renewed when old.
    fn provider_token(&self) -> Result<String, SendError> {
        let mut cached = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(token) = cached.as_ref().filter(|t| t.issued.elapsed() < TOKEN_TTL) {
            return Ok(token.jwt.clone());
        }
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let header = serde_json::json!({ "alg": "ES256", "kid": self.key_id });
        let claims = serde_json::json!({ "iss": self.team_id, "iat": iat });
        let input =
            format!("{}.{}", http::b64url(header.to_string().as_bytes()), http::b64url(claims.to_string().as_bytes()));
        let signature = self.key.sign(&self.rng, input.as_bytes()).map_err(|_| SendError::Retry {
            reason: "signing the provider token failed".into(),
            retry_after: None,
            throttled: false,
        })?;
        let jwt = format!("{input}.{}", http::b64url(signature.as_ref()));
        *cached = Some(ProviderToken { jwt: jwt.clone(), issued: Instant::now() });
        Ok(jwt)
    }

    /// Forget the provider token if it is still `jwt` (Apple called it stale).
    fn drop_token(&self, jwt: &str) {
        let mut cached = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.as_ref().is_some_and(|t| t.jwt == jwt) {
            *cached = None;
        }
    }

    fn request(&self, to: &Address, message: &Message, jwt: &str) -> Result<Request<Full<Bytes>>, SendError> {
        let token = to.to.as_str();
        let Message::Push { title, body, data, collapse_key, critical, ttl_seconds } = message else {
            return Err(SendError::Rejected { reason: "APNs sends push messages only".into() });
        };
        // Apple caps the collapse id at 64 bytes: a longer key is hashed (stable, so it still collapses).
        // Without a key, the delivery's own: a repeat of this delivery replaces it on the device.
        let collapse = match collapse_key.as_deref() {
            Some(k) if k.len() <= 64 => k.to_owned(),
            Some(k) => short_hash(k),
            None => to.own_collapse_id(),
        };
        let apns_id = to.delivery.hyphenated().to_string();
        let expiration = match ttl_seconds {
            0 => 0,
            ttl => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + u64::from(*ttl),
        };
        let options = NotificationOptions {
            apns_push_type: Some(PushType::Alert),
            apns_priority: Some(if *critical { Priority::High } else { Priority::Normal }),
            apns_expiration: Some(expiration),
            apns_topic: Some(&self.topic),
            apns_collapse_id: Some(
                CollapseId::new(&collapse).map_err(|e| SendError::Rejected { reason: e.to_string() })?,
            ),
            apns_id: Some(&apns_id),
        };
        let mut payload = DefaultNotificationBuilder::new()
            .set_title(title)
            .set_body(body)
            .set_sound("default")
            .build(token, options);
        for (key, value) in data {
            if key != "aps" {
                payload
                    .add_custom_data(key, value)
                    .map_err(|e| SendError::Rejected { reason: format!("custom data {key}: {e}") })?;
            }
        }
        let json = payload.to_json_string().map_err(|e| SendError::Rejected { reason: e.to_string() })?;
        let options = payload.get_options();
        let mut builder = Request::post(format!("{}/3/device/{token}", self.endpoint))
            .header("authorization", format!("bearer {jwt}"))
            .header("content-type", "application/json");
        if let Some(topic) = options.apns_topic {
            builder = builder.header("apns-topic", topic);
        }
        if let Some(push_type) = options.apns_push_type {
            builder = builder.header("apns-push-type", push_type.to_string());
        }
        if let Some(priority) = &options.apns_priority {
            builder = builder.header("apns-priority", priority.to_string());
        }
        if let Some(expiration) = options.apns_expiration {
            builder = builder.header("apns-expiration", expiration.to_string());
        }
        if let Some(collapse) = &options.apns_collapse_id {
            builder = builder.header("apns-collapse-id", collapse.value);
        }
        if let Some(id) = options.apns_id {
            builder = builder.header("apns-id", id);
        }
        builder.body(Full::new(Bytes::from(json))).map_err(|e| SendError::Rejected { reason: format!("request: {e}") })
    }

    async fn send_push(&self, to: &Address, message: &Message) -> Result<Sent, SendError> {
        // A token is hex; anything else could not name a device (nor be put in a path).
        if to.to.is_empty() || !to.to.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SendError::DeadAddress { reason: "not an APNs device token".into() });
        }
        let jwt = self.provider_token()?;
        let request = self.request(to, message, &jwt)?;
        let answer = http::send(&self.client, request, self.request_timeout).await.map_err(|e| match e {
            NoAnswer::Timeout(_) | NoAnswer::Connection(_) => {
                SendError::Retry { reason: format!("APNs: {e}"), retry_after: None, throttled: false }
            }
        })?;
        if answer.status == StatusCode::OK {
            let apns_id = answer.headers.get("apns-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            return Ok(Sent { provider_id: apns_id });
        }
        let outcome = classify(answer.status, &answer.body, http::retry_after(&answer.headers));
        if outcome.stale_token {
            self.drop_token(&jwt);
        }
        Err(outcome.error)
    }
}

impl Channel for ApnsChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Apns
    }

    fn send<'a>(&'a self, to: &'a Address, message: &'a Message) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.send_push(to, message))
    }
}

fn short_hash(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref()[..32].iter().map(|b| format!("{b:02x}")).collect()
}

struct Outcome {
    error: SendError,
    /// Apple called the provider token stale: sign a new one.
    stale_token: bool,
}

/// An APNs error answer as the delivery loop acts on it. Every reason Apple
/// documents (a2's [`ErrorReason`]) is matched by name, so a new one in a2
/// must be placed here before it builds.
fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Outcome {
    let reason = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.reason);
    let text = match &reason {
        Some(r) => format!("APNs {status} {r:?}"),
        None => format!("APNs {status} {}", String::from_utf8_lossy(body).chars().take(200).collect::<String>()),
    };
    let retry = |throttled| SendError::Retry { reason: text.clone(), retry_after, throttled };
    let dead = || SendError::DeadAddress { reason: text.clone() };
    let rejected = || SendError::Rejected { reason: text.clone() };
    let plain = |error| Outcome { error, stale_token: false };
    let Some(reason) = reason else {
        return plain(match status.as_u16() {
            410 => dead(),
            429 => retry(true),
            408 | 500..=599 => retry(false),
            _ => rejected(),
        });
    };
    match reason {
        // The token is dead for this app: retire it.
        ErrorReason::Unregistered | ErrorReason::BadDeviceToken | ErrorReason::DeviceTokenNotForTopic => plain(dead()),
        // Slow down, then try again.
        ErrorReason::TooManyRequests | ErrorReason::TooManyProviderTokenUpdates => plain(retry(true)),
        // Apple's side, or the connection: try again.
        ErrorReason::InternalServerError
        | ErrorReason::ServiceUnavailable
        | ErrorReason::Shutdown
        | ErrorReason::IdleTimeout => plain(retry(false)),
        ErrorReason::ExpiredProviderToken => Outcome { error: retry(false), stale_token: true },
        // This message or our setup is wrong: no retry will fix it.
        ErrorReason::BadCollapseId
        | ErrorReason::BadExpirationDate
        | ErrorReason::BadMessageId
        | ErrorReason::BadPriority
        | ErrorReason::BadTopic
        | ErrorReason::DuplicateHeaders
        | ErrorReason::MissingDeviceToken
        | ErrorReason::MissingTopic
        | ErrorReason::PayloadEmpty
        | ErrorReason::TopicDisallowed
        | ErrorReason::BadCertificate
        | ErrorReason::BadCertificateEnvironment
        | ErrorReason::Forbidden
        | ErrorReason::InvalidProviderToken
        | ErrorReason::MissingProviderToken
        | ErrorReason::BadPath
        | ErrorReason::MethodNotAllowed
        | ErrorReason::PayloadTooLarge => plain(rejected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dead(status: u16, body: &str) -> bool {
        let status = StatusCode::from_u16(status).expect("a status");
        matches!(classify(status, body.as_bytes(), None).error, SendError::DeadAddress { .. })
    }

    #[test]
    fn every_dead_token_reason_retires_the_device() {
        assert!(is_dead(410, r#"{"reason":"Unregistered","timestamp":1700000000000}"#));
        assert!(is_dead(400, r#"{"reason":"BadDeviceToken"}"#));
        assert!(is_dead(400, r#"{"reason":"DeviceTokenNotForTopic"}"#));
        assert!(is_dead(410, ""));
        assert!(!is_dead(400, r#"{"reason":"BadTopic"}"#));
    }

    #[test]
    fn throttling_and_server_errors_retry() {
        let throttled =
            classify(StatusCode::TOO_MANY_REQUESTS, br#"{"reason":"TooManyRequests"}"#, Some(Duration::from_secs(7)));
        assert!(matches!(
            throttled.error,
            SendError::Retry { throttled: true, retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        let down = classify(StatusCode::SERVICE_UNAVAILABLE, br#"{"reason":"ServiceUnavailable"}"#, None);
        assert!(matches!(down.error, SendError::Retry { throttled: false, .. }));
        let stale = classify(StatusCode::FORBIDDEN, br#"{"reason":"ExpiredProviderToken"}"#, None);
        assert!(stale.stale_token);
    }

    #[test]
    fn long_collapse_keys_hash_to_64_bytes() {
        assert_eq!(short_hash(&"k".repeat(100)).len(), 64);
    }
}
