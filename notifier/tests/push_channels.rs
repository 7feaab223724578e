//! The APNs and FCM channels against the stand-ins, over real TCP (HTTP/2
//! with prior knowledge for APNs): what arrives, and how every provider
//! answer maps to the delivery loop's [`SendError`].
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gavel_notifier::apns::{ApnsChannel, ApnsConfig};
use gavel_notifier::channel::{Address, Channel, Message, SendError};
use gavel_notifier::fcm::{FcmChannel, FcmConfig};
use gavel_standins::apns::{ApnsFaults, ApnsStandIn, ApnsStandInConfig};
use gavel_standins::fcm::{FcmFaults, FcmStandIn, FcmStandInConfig};
use gavel_standins::keys;

const TOPIC: &str = "dev.gavel.app";

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("gavel-push-{}-{name}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).expect("write a scratch file");
    path
}

fn push(critical: bool) -> Message {
    Message::Push {
        title: "Sneakers are live".into(),
        body: "The sale started: 10 pairs at $19.99".into(),
        data: BTreeMap::from([("sale_id".to_owned(), "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".to_owned())]),
        collapse_key: Some("sale:0193a1b2".into()),
        critical,
        ttl_seconds: 600,
    }
}

fn to(token: &str) -> Address {
    Address { to: token.to_owned(), name: None, delivery: uuid::Uuid::new_v4() }
}

fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn apns(request_timeout_ms: u64) -> (ApnsStandIn, ApnsChannel) {
    let p8 = keys::new_apns_p8().expect("a P-256 key");
    let standin = ApnsStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        ApnsStandInConfig {
            public_key: keys::apns_public_key(&p8).expect("its public key"),
            key_id: "KEY1234567".into(),
            team_id: "TEAM123456".into(),
            topic: TOPIC.into(),
        },
    )
    .await
    .expect("the APNs stand-in starts");
    let config = ApnsConfig {
        key_file: Some(scratch_file("apns.p8", &p8)),
        key_id: "KEY1234567".into(),
        team_id: "TEAM123456".into(),
        topic: TOPIC.into(),
        endpoint: standin.endpoint(),
        connect_timeout_ms: 1_000,
        request_timeout_ms,
    };
    let channel = ApnsChannel::from_config(&config).expect("the APNs channel builds");
    (standin, channel)
}

#[tokio::test]
async fn apns_push_arrives_over_http2_with_apples_headers_and_a_verified_cached_token() {
    let (standin, channel) = apns(5_000).await;
    let sent = channel.send(&to(&apns_token(1)), &push(true)).await.expect("accepted");
    channel.send(&to(&apns_token(2)), &push(false)).await.expect("accepted");

    let deliveries = standin.deliveries();
    assert_eq!(deliveries.len(), 2);
    let first = &deliveries[0];
    assert_eq!(sent.provider_id.as_deref(), Some(first.apns_id.as_str()));
    assert_eq!(first.token, apns_token(1));
    assert_eq!((first.topic.as_str(), first.push_type.as_str(), first.priority.as_str()), (TOPIC, "alert", "10"));
    assert_eq!(deliveries[1].priority, "5", "a non-critical message goes at priority 5");
    assert_eq!(first.collapse_id.as_deref(), Some("sale:0193a1b2"));
    let expiration: i64 = first.expiration.as_deref().expect("apns-expiration").parse().expect("a number");
    let now = chrono::Utc::now().timestamp();
    assert!((now + 590..=now + 610).contains(&expiration), "expires about ttl_seconds from now");
    assert_eq!(
        (first.key_id.as_str(), first.payload["aps"]["alert"]["title"].as_str()),
        ("KEY1234567", Some("Sneakers are live"))
    );
    assert_eq!(first.payload["aps"]["alert"]["body"], "The sale started: 10 pairs at $19.99");
    assert_eq!(first.payload["sale_id"], "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b");

    let requests = standin.requests();
    assert!(requests.iter().all(|r| r.http_version == "HTTP/2.0"), "{requests:?}");
    assert_eq!(requests[0].jwt, requests[1].jwt, "the provider token is signed once and reused");
}

#[tokio::test]
async fn apns_unregistered_bad_device_token_and_token_not_for_topic_are_each_a_dead_address() {
    let (standin, channel) = apns(5_000).await;
    let reasons = ["Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"];
    standin.set_faults(ApnsFaults {
        dead_tokens: reasons.iter().enumerate().map(|(i, r)| (apns_token(i as u8 + 10), (*r).to_owned())).collect(),
        ..ApnsFaults::default()
    });
    for (i, reason) in reasons.iter().enumerate() {
        let err = channel.send(&to(&apns_token(i as u8 + 10)), &push(false)).await.expect_err("refused");
        assert!(matches!(&err, SendError::DeadAddress { reason: why } if why.contains(reason)), "{reason}: {err:?}");
    }
    let statuses: Vec<u16> = standin.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [410, 400, 400]);
    assert!(standin.deliveries().is_empty());
}

#[tokio::test]
async fn apns_429_is_a_throttled_retry_after_its_retry_after_and_5xx_a_plain_retry() {
    let (standin, channel) = apns(5_000).await;
    standin.set_faults(ApnsFaults { throttle_next: 1, retry_after_seconds: Some(7), ..ApnsFaults::default() });
    let err = channel.send(&to(&apns_token(3)), &push(false)).await.expect_err("throttled");
    assert_eq!(
        err,
        SendError::Retry {
            reason: "APNs 429 Too Many Requests TooManyRequests".into(),
            retry_after: Some(Duration::from_secs(7)),
            throttled: true
        }
    );
    standin.set_faults(ApnsFaults { fail_next: 1, ..ApnsFaults::default() });
    let err = channel.send(&to(&apns_token(3)), &push(false)).await.expect_err("a server error");
    assert!(matches!(err, SendError::Retry { throttled: false, .. }), "{err:?}");
    channel.send(&to(&apns_token(3)), &push(false)).await.expect("then accepted");
    assert_eq!(standin.deliveries().len(), 1);
}

#[tokio::test]
async fn apns_refused_connections_and_slow_answers_retry_then_recover() {
    let (standin, channel) = apns(500).await;
    channel.send(&to(&apns_token(4)), &push(false)).await.expect("accepted while up");
    standin.set_faults(ApnsFaults { refuse: true, ..ApnsFaults::default() });
    let err = channel.send(&to(&apns_token(4)), &push(false)).await.expect_err("refused");
    assert!(matches!(err, SendError::Retry { throttled: false, .. }), "{err:?}");
    standin.set_faults(ApnsFaults { latency_ms: 1_500, ..ApnsFaults::default() });
    let err = channel.send(&to(&apns_token(4)), &push(false)).await.expect_err("too slow");
    assert!(matches!(&err, SendError::Retry { reason, .. } if reason.contains("no answer")), "{err:?}");
    standin.set_faults(ApnsFaults::default());
    channel.send(&to(&apns_token(4)), &push(false)).await.expect("accepted after recovery");
}

async fn fcm() -> (FcmStandIn, FcmChannel) {
    let standin = FcmStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        FcmStandInConfig::test_account("gavel-test").expect("the test key"),
    )
    .await
    .expect("the FCM stand-in starts");
    let config = FcmConfig {
        project_id: "gavel-test".into(),
        service_account_file: Some(scratch_file("sa.json", &standin.service_account_json())),
        api_base: standin.api_base(),
        connect_timeout_ms: 1_000,
        request_timeout_ms: 5_000,
    };
    let channel = FcmChannel::from_config(&config).expect("the FCM channel builds");
    (standin, channel)
}

#[tokio::test]
async fn fcm_mints_its_token_at_token_uri_once_and_reuses_it() {
    let (standin, channel) = fcm().await;
    let sent = channel.send(&to("fcm-token-1"), &push(true)).await.expect("accepted");
    channel.send(&to("fcm-token-2"), &push(false)).await.expect("accepted");
    assert_eq!(standin.tokens_issued(), 1);
    let messages = standin.messages();
    assert_eq!(sent.provider_id.as_deref(), Some(messages[0].name.as_str()));
    assert!(messages[0].name.starts_with("projects/gavel-test/messages/"));
    let m = &messages[0].message;
    assert_eq!(m["token"], "fcm-token-1");
    assert_eq!(m["notification"]["title"], "Sneakers are live");
    assert_eq!(m["data"]["sale_id"], "sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b");
    assert_eq!((m["android"]["priority"].as_str(), m["android"]["ttl"].as_str()), (Some("HIGH"), Some("600s")));
    assert_eq!(m["android"]["collapse_key"], "sale:0193a1b2");
    assert_eq!(messages[1].message["android"]["priority"], "NORMAL");
}

#[tokio::test]
async fn fcm_unregistered_invalid_token_and_sender_mismatch_are_dead_addresses() {
    let (standin, channel) = fcm().await;
    let codes = ["UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"];
    standin.set_faults(FcmFaults {
        dead_tokens: codes.iter().map(|c| (format!("dead-{c}"), (*c).to_owned())).collect(),
        ..FcmFaults::default()
    });
    for code in codes {
        let err = channel.send(&to(&format!("dead-{code}")), &push(false)).await.expect_err("refused");
        assert!(matches!(err, SendError::DeadAddress { .. }), "{code}: {err:?}");
    }
    assert!(standin.messages().is_empty());
}

#[tokio::test]
async fn fcm_quota_exceeded_is_a_throttled_retry_with_retry_after_and_unavailable_a_retry() {
    let (standin, channel) = fcm().await;
    standin.set_faults(FcmFaults { throttle_next: 1, retry_after_seconds: Some(30), ..FcmFaults::default() });
    let err = channel.send(&to("fcm-token-3"), &push(false)).await.expect_err("throttled");
    assert!(
        matches!(err, SendError::Retry { throttled: true, retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{err:?}"
    );
    standin.set_faults(FcmFaults { fail_next: 1, ..FcmFaults::default() });
    let err = channel.send(&to("fcm-token-3"), &push(false)).await.expect_err("unavailable");
    assert!(matches!(err, SendError::Retry { throttled: false, .. }), "{err:?}");
    channel.send(&to("fcm-token-3"), &push(false)).await.expect("then accepted");
}

#[tokio::test]
async fn fcm_401_mints_a_new_token_once_and_the_send_goes_through() {
    let (standin, channel) = fcm().await;
    channel.send(&to("fcm-token-4"), &push(false)).await.expect("accepted");
    standin.revoke_tokens();
    channel.send(&to("fcm-token-4"), &push(false)).await.expect("accepted with a fresh token");
    assert_eq!(standin.tokens_issued(), 2);
    let statuses: Vec<u16> = standin.sends().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(standin.messages().len(), 2);
}
