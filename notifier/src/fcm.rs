//! FCM HTTP v1: `POST {FCM_API_BASE}/v1/projects/{project}/messages:send`
//! with an OAuth2 bearer minted from a service account.
//!
//! The published `fcm` crate speaks the legacy `fcm/send` API that Google
//! shut down in 2024, and the small v1 crates hard-code Google's URLs; this
//! is the small client instead. The access token comes from the service
//! account's own `token_uri` (a JWT-bearer assertion, RS256, signed by ring
//! with the account's PKCS#8 RSA key; scope `firebase.messaging`), is cached
//! until five minutes before it expires, and a `401` mints a new one once.
//! Sends go over HTTP/2 (ALPN `h2` to Google, prior knowledge to a plain
//! `http://` stand-in), many streams on one connection; the token endpoint
//! is asked over whatever it negotiates.
//!
//! Construct with [`FcmChannel::from_config`] when [`FcmConfig::is_configured`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{Address, Channel, ChannelKind, Message, SendError, Sent};
use crate::http::{self, Answer, HttpClient, NoAnswer, Versions};

/// Google's API base.
pub const GOOGLE_API_BASE: &str = "https://fcm.googleapis.com";
/// The OAuth2 scope FCM's send API takes.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A cached access token is replaced this long before it expires.
const EARLY: Duration = Duration::from_secs(300);

/// `[fcm]` (`FCM_PROJECT_ID`, `FCM_SERVICE_ACCOUNT_FILE` or
/// `GOOGLE_APPLICATION_CREDENTIALS`, `FCM_API_BASE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The Firebase project. Unset (with no service account file): no FCM channel.
    pub project_id: String,
    /// The service-account JSON (`client_email`, `private_key`, `token_uri`).
    pub service_account_file: Option<PathBuf>,
    /// `https://fcm.googleapis.com`, or a stand-in's `http://host:port`.
    pub api_base: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            project_id: String::new(),
            service_account_file: None,
            api_base: GOOGLE_API_BASE.to_owned(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
        }
    }
}

impl FcmConfig {
    /// Whether FCM is configured (a project and a service account file).
    pub fn is_configured(&self) -> bool {
        !self.project_id.trim().is_empty()
            && self.service_account_file.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }
}

/// Why the channel could not be built; names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum FcmSetupError {
    #[error("FCM_PROJECT_ID is not set")]
    NoProject,
    #[error("FCM_SERVICE_ACCOUNT_FILE (or GOOGLE_APPLICATION_CREDENTIALS) is not set")]
    NoServiceAccount,
    #[error("service account file {path}: {reason}")]
    ServiceAccount { path: String, reason: String },
    #[error("FCM_API_BASE {0:?} must be an http:// or https:// URL")]
    ApiBase(String),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The fields of a service-account key file this client reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

struct AccessToken {
    bearer: String,
    refresh_at: Instant,
}

/// The FCM channel.
pub struct FcmChannel {
    /// HTTP/2 only: the sends.
    client: HttpClient,
    /// HTTP/1.1 or HTTP/2: the token endpoint.
    token_client: HttpClient,
    send_url: String,
    account: ServiceAccount,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// Held while a token is minted, so one process mints one at a time.
    token: tokio::sync::Mutex<Option<AccessToken>>,
    request_timeout: Duration,
}

impl FcmChannel {
    pub fn from_config(config: &FcmConfig) -> Result<Self, FcmSetupError> {
        if config.project_id.trim().is_empty() {
            return Err(FcmSetupError::NoProject);
        }
        let path = config
            .service_account_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or(FcmSetupError::NoServiceAccount)?;
        let account_error = |reason: String| FcmSetupError::ServiceAccount { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| account_error(e.to_string()))?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| account_error(e.to_string()))?;
        let der = http::pem_der(&account.private_key, "PRIVATE KEY")
            .ok_or_else(|| account_error("private_key is not a PEM \"PRIVATE KEY\" (PKCS#8)".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| account_error(format!("private_key: {e}")))?;
        if !(account.token_uri.starts_with("https://") || account.token_uri.starts_with("http://")) {
            return Err(account_error(format!("token_uri {:?} is not a URL", account.token_uri)));
        }
        let base = config.api_base.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(FcmSetupError::ApiBase(config.api_base.clone()));
        }
        Ok(Self {
            client: http::client(Versions::Http2Only, Duration::from_millis(config.connect_timeout_ms))?,
            token_client: http::client(Versions::Negotiated, Duration::from_millis(config.connect_timeout_ms))?,
            send_url: format!("{base}/v1/projects/{}/messages:send", config.project_id.trim()),
            account,
            key,
            rng: SystemRandom::new(),
            token: tokio::sync::Mutex::new(None),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        })
    }

    /// The cached access token, or a new one from `token_uri`.
    async fn access_token(&self) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.bearer.clone());
        }
        let token = self.mint().await?;
        let bearer = token.bearer.clone();
        *cached = Some(token);
        Ok(bearer)
    }

    /// Forget the access token if it is still `bearer` (FCM refused it).
    async fn drop_token(&self, bearer: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.bearer == bearer) {
            *cached = None;
        }
    }

    fn assertion(&self) -> Result<String, SendError> {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.account.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.account.client_email, "scope": SCOPE, "aud": self.account.token_uri,
            "iat": iat, "exp": iat + 3600,
        });
        let input =
            format!("{}.{}", http::b64url(header.to_string().as_bytes()), http::b64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut signature).map_err(|_| {
            SendError::Retry {
                reason: "signing the OAuth assertion failed".into(),
                retry_after: None,
                throttled: false,
            }
        })?;
        Ok(format!("{input}.{}", http::b64url(&signature)))
    }

    async fn mint(&self) -> Result<AccessToken, SendError> {
        let form = format!(
            "grant_type={}&assertion={}",
            form_encode("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            form_encode(&self.assertion()?)
        );
        let request = Request::post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| SendError::Rejected { reason: format!("token request: {e}") })?;
        let answer = http::send(&self.token_client, request, self.request_timeout).await.map_err(|e| {
            SendError::Retry { reason: format!("FCM token endpoint: {e}"), retry_after: None, throttled: false }
        })?;
        #[derive(Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        if answer.status != StatusCode::OK {
            // The token endpoint failing holds every send back: retry (and let the breaker see it).
            return Err(SendError::Retry {
                reason: format!("FCM token endpoint answered {}: {}", answer.status, snippet(&answer.body)),
                retry_after: http::retry_after(&answer.headers),
                throttled: answer.status == StatusCode::TOO_MANY_REQUESTS,
            });
        }
        let granted: Granted = serde_json::from_slice(&answer.body).map_err(|e| SendError::Retry {
            reason: format!("FCM token endpoint answered an unreadable token: {e}"),
            retry_after: None,
            throttled: false,
        })?;
        let lifetime = Duration::from_secs(granted.expires_in);
        Ok(AccessToken { bearer: granted.access_token, refresh_at: Instant::now() + lifetime.saturating_sub(EARLY) })
    }

    fn body(to: &Address, message: &Message) -> Result<Value, SendError> {
        let token = to.to.as_str();
        let Message::Push { title, body, data, collapse_key, critical, ttl_seconds } = message else {
            return Err(SendError::Rejected { reason: "FCM sends push messages only".into() });
        };
        let mut android =
            json!({ "priority": if *critical { "HIGH" } else { "NORMAL" }, "ttl": format!("{ttl_seconds}s") });
        let mut apns_headers = BTreeMap::from([("apns-priority", if *critical { "10" } else { "5" }.to_owned())]);
        // The notification's tag (and on iOS its collapse id) is the collapse
        // key, or the delivery's own: a repeat of this delivery after a crash
        // replaces it in the drawer instead of showing twice.
        let tag = match collapse_key {
            Some(key) => {
                android["collapse_key"] = json!(key);
                key.clone()
            }
            None => to.own_collapse_id(),
        };
        if tag.len() <= 64 {
            apns_headers.insert("apns-collapse-id", tag.clone());
        }
        android["notification"] = json!({ "tag": tag });
        Ok(json!({ "message": {
            "token": token,
            "notification": { "title": title, "body": body },
            "data": data,
            "android": android,
            "apns": { "headers": apns_headers },
        }}))
    }

    async fn post(&self, bearer: &str, body: &Value) -> Result<Answer, SendError> {
        let request = Request::post(&self.send_url)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| SendError::Rejected { reason: format!("request: {e}") })?;
        http::send(&self.client, request, self.request_timeout).await.map_err(|e| match e {
            NoAnswer::Timeout(_) | NoAnswer::Connection(_) => {
                SendError::Retry { reason: format!("FCM: {e}"), retry_after: None, throttled: false }
            }
        })
    }

    async fn send_push(&self, to: &Address, message: &Message) -> Result<Sent, SendError> {
        let body = Self::body(to, message)?;
        let bearer = self.access_token().await?;
        let mut answer = self.post(&bearer, &body).await?;
        if answer.status == StatusCode::UNAUTHORIZED && classify(&answer).is_none() {
            // Revoked or expired early: mint a new token, once.
            self.drop_token(&bearer).await;
            let bearer = self.access_token().await?;
            answer = self.post(&bearer, &body).await?;
        }
        if answer.status.is_success() {
            #[derive(Deserialize)]
            struct Name {
                name: Option<String>,
            }
            let name = serde_json::from_slice::<Name>(&answer.body).ok().and_then(|n| n.name);
            return Ok(Sent { provider_id: name });
        }
        Err(classify(&answer).unwrap_or_else(|| SendError::Retry {
            reason: format!("FCM {} (unauthenticated after a fresh token): {}", answer.status, snippet(&answer.body)),
            retry_after: None,
            throttled: false,
        }))
    }
}

impl Channel for FcmChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Fcm
    }

    fn send<'a>(&'a self, to: &'a Address, message: &'a Message) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.send_push(to, message))
    }
}

/// FCM's `errorCode` (the `FcmError` detail), as documented.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FcmErrorCode {
    UnspecifiedError,
    InvalidArgument,
    Unregistered,
    SenderIdMismatch,
    QuotaExceeded,
    Unavailable,
    Internal,
    ThirdPartyAuthError,
    /// Absent, or one not documented when this was written.
    Other(String),
}

impl FcmErrorCode {
    fn parse(s: &str) -> Self {
        match s {
            "UNSPECIFIED_ERROR" => Self::UnspecifiedError,
            "INVALID_ARGUMENT" => Self::InvalidArgument,
            "UNREGISTERED" => Self::Unregistered,
            "SENDER_ID_MISMATCH" => Self::SenderIdMismatch,
            "QUOTA_EXCEEDED" => Self::QuotaExceeded,
            "UNAVAILABLE" => Self::Unavailable,
            "INTERNAL" => Self::Internal,
            "THIRD_PARTY_AUTH_ERROR" => Self::ThirdPartyAuthError,
            other => Self::Other(other.to_owned()),
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorStatus,
}

#[derive(Deserialize)]
struct ErrorStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// An error answer as the delivery loop acts on it; `None` for a plain `401`
/// (the access token was refused: the caller mints a new one).
fn classify(answer: &Answer) -> Option<SendError> {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(&answer.body).ok().map(|e| e.error);
    let (status_text, message, details) = match &parsed {
        Some(e) => (e.status.as_str(), e.message.as_str(), e.details.as_slice()),
        None => ("", "", &[][..]),
    };
    let code = details
        .iter()
        .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        .map(FcmErrorCode::parse)
        .unwrap_or_else(|| FcmErrorCode::parse(status_text));
    // A `google.rpc.BadRequest` field violation naming the token, or a message that does.
    let names_token = details.iter().any(|d| {
        d.get("fieldViolations")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|f| f.get("field").and_then(Value::as_str) == Some("message.token")))
    }) || message.contains("message.token");
    let text = format!(
        "FCM {} {code:?}: {}",
        answer.status,
        if message.is_empty() { snippet(&answer.body) } else { message.to_owned() }
    );
    let retry_after = http::retry_after(&answer.headers);
    let retry = |throttled| SendError::Retry { reason: text.clone(), retry_after, throttled };
    let status = answer.status.as_u16();
    Some(match code {
        FcmErrorCode::Unregistered => SendError::DeadAddress { reason: text },
        FcmErrorCode::SenderIdMismatch => SendError::DeadAddress { reason: text },
        FcmErrorCode::InvalidArgument if names_token => SendError::DeadAddress { reason: text },
        FcmErrorCode::InvalidArgument => SendError::Rejected { reason: text },
        FcmErrorCode::QuotaExceeded => retry(true),
        FcmErrorCode::Unavailable | FcmErrorCode::Internal => retry(false),
        FcmErrorCode::ThirdPartyAuthError => SendError::Rejected { reason: text },
        FcmErrorCode::UnspecifiedError | FcmErrorCode::Other(_) => match status {
            404 => SendError::DeadAddress { reason: text },
            401 => return None,
            429 => retry(true),
            408 | 500..=599 => retry(false),
            _ => SendError::Rejected { reason: text },
        },
    })
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// `application/x-www-form-urlencoded` for the few values sent (unreserved characters kept).
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::HeaderMap;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).expect("a status"),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn fcm_error(status: u16, code: &str, extra: Value) -> Value {
        let mut details =
            vec![json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code })];
        if !extra.is_null() {
            details.push(extra);
        }
        json!({ "error": { "code": status, "message": "m", "status": code, "details": details } })
    }

    #[test]
    fn unregistered_and_token_naming_invalid_argument_are_dead() {
        assert!(matches!(
            classify(&answer(404, fcm_error(404, "UNREGISTERED", Value::Null))),
            Some(SendError::DeadAddress { .. })
        ));
        let violation = json!({ "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": "message.token", "description": "Invalid registration token" }] });
        assert!(matches!(
            classify(&answer(400, fcm_error(400, "INVALID_ARGUMENT", violation))),
            Some(SendError::DeadAddress { .. })
        ));
        assert!(matches!(
            classify(&answer(400, fcm_error(400, "INVALID_ARGUMENT", Value::Null))),
            Some(SendError::Rejected { .. })
        ));
        assert!(matches!(classify(&answer(404, json!({}))), Some(SendError::DeadAddress { .. })));
    }

    #[test]
    fn a_plain_401_asks_for_a_new_token() {
        let body = json!({ "error": { "code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED" } });
        assert!(classify(&answer(401, body)).is_none());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("a:b/c"), "a%3Ab%2Fc");
    }
}
