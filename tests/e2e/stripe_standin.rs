//! The Stripe stand-in speaks Stripe's wire protocol: the real async-stripe
//! client talks to it over HTTP, and async-stripe's webhook verification
//! accepts its signed events, and async-stripe's pagers page through its
//! lists and search results.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use futures::TryStreamExt;
use gavel_standins::stripe::{Faults, StripeStandIn, WebhookTarget};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::PaymentIntentStatus;
use stripe_core::payment_intent::{CreatePaymentIntent, ListPaymentIntent, RetrievePaymentIntent, SearchPaymentIntent};
use stripe_core::refund::{CreateRefund, ListRefund};
use stripe_types::Currency;
use stripe_webhook::{EventObject, Webhook};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_test_standin";

async fn standin(webhook: Option<WebhookTarget>) -> StripeStandIn {
    let addr = "127.0.0.1:0".parse().expect("a valid literal");
    StripeStandIn::start(addr, webhook).await.expect("start stand-in")
}

fn client(stripe: &StripeStandIn, timeout: Duration) -> Client {
    ClientBuilder::new("sk_test_gavel").url(stripe.api_base()).timeout(timeout).build().expect("client")
}

fn charge(claim: &str, payment_method: &str) -> CreatePaymentIntent {
    let metadata = HashMap::from([("claim_id".to_owned(), claim.to_owned())]);
    CreatePaymentIntent::new(1999, Currency::USD).payment_method(payment_method).confirm(true).metadata(metadata)
}

fn key(k: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(k).expect("a valid idempotency key"))
}

#[tokio::test]
async fn a_payment_with_an_idempotency_key_charges_once_however_often_it_is_sent() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    let first = charge("clm_1", "pm_card_visa").customize().request_strategy(key("clm_1:pay")).send(&client).await;
    let first = first.expect("the stand-in answers the Stripe call");
    assert_eq!(first.status, PaymentIntentStatus::Succeeded);
    assert_eq!(first.amount_received, 1999);
    let again = charge("clm_1", "pm_card_visa").customize().request_strategy(key("clm_1:pay")).send(&client).await;
    assert_eq!(again.expect("the stand-in answers the Stripe call").id, first.id);
    assert_eq!(stripe.payment_intents().len(), 1, "one charge");

    let other = charge("clm_2", "pm_card_visa").customize().request_strategy(key("clm_1:pay")).send(&client).await;
    match other {
        Err(StripeError::Stripe(err, 400)) => {
            assert_eq!(err.message.as_deref().map(|m| m.contains("same parameters")), Some(true))
        }
        other => panic!("a reused key with other parameters must be refused: {other:?}"),
    }
    let got =
        RetrievePaymentIntent::new(first.id.clone()).send(&client).await.expect("the stand-in answers the Stripe call");
    assert_eq!(got.status, PaymentIntentStatus::Succeeded);
}

#[tokio::test]
async fn a_declined_card_is_a_402_card_error_and_leaves_the_intent_unpaid() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    let declined = charge("clm_3", "pm_card_chargeDeclined").send(&client).await;
    match declined {
        Err(StripeError::Stripe(err, 402)) => {
            assert_eq!(err.decline_code.as_deref(), Some("generic_decline"));
            let pi = err.payment_intent.unwrap_or_else(|| panic!("the intent is in the error"));
            assert_eq!(pi.status, PaymentIntentStatus::RequiresPaymentMethod);
        }
        other => panic!("expected a decline: {other:?}"),
    }
}

#[tokio::test]
async fn a_lost_response_times_out_and_the_charge_is_found_by_its_metadata() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_millis(300));
    stripe.set_faults(Faults { lose_next: 1, ..Faults::default() });
    let lost = charge("clm_4", "pm_card_visa").customize().request_strategy(key("clm_4:pay")).send(&client).await;
    assert!(lost.is_err(), "the client saw no answer: {lost:?}");
    assert_eq!(stripe.faults().lose_next, 0);

    let found = SearchPaymentIntent::new("metadata['claim_id']:'clm_4'").send(&client).await;
    let found = found.expect("the stand-in answers the Stripe call");
    assert_eq!(found.data.len(), 1);
    assert_eq!(found.data[0].status, PaymentIntentStatus::Succeeded, "it charged although the answer was lost");
    // Retrying with the same key replays the charge instead of making another.
    let retried = charge("clm_4", "pm_card_visa").customize().request_strategy(key("clm_4:pay")).send(&client).await;
    assert_eq!(retried.expect("the stand-in answers the Stripe call").id, found.data[0].id);
    assert_eq!(stripe.payment_intents().len(), 1);
}

#[tokio::test]
async fn injected_server_errors_change_nothing() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    stripe.set_faults(Faults { fail_next: 1, ..Faults::default() });
    let failed = charge("clm_5", "pm_card_visa").send(&client).await;
    assert!(matches!(failed, Err(StripeError::Stripe(_, 500))), "{failed:?}");
    assert!(stripe.payment_intents().is_empty());
}

#[tokio::test]
async fn refunds_return_money_once_and_events_are_signed_as_stripe_signs_them() {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let sig = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let payload = String::from_utf8_lossy(&body);
                match Webhook::construct_event(&payload, sig, SECRET) {
                    Ok(event) => {
                        let what = match event.data.object {
                            EventObject::PaymentIntentSucceeded(pi) => format!("succeeded {}", pi.id),
                            EventObject::RefundCreated(r) => format!("refunded {}", r.amount),
                            _ => "other".to_owned(),
                        };
                        let _ = tx.send(what);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local socket");
    let url = format!("http://{}/hook", listener.local_addr().expect("a bound address"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let stripe = standin(Some(WebhookTarget { url, secret: SECRET.into() })).await;
    let client = client(&stripe, Duration::from_secs(5));
    let pi = charge("clm_6", "pm_card_visa").send(&client).await.expect("the stand-in answers the Stripe call");
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.ok().flatten();
    assert_eq!(next, Some(format!("succeeded {}", pi.id)));

    let refund = CreateRefund::new()
        .payment_intent(pi.id.as_str())
        .send(&client)
        .await
        .expect("the stand-in answers the Stripe call");
    assert_eq!(refund.amount, 1999);
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.ok().flatten();
    assert_eq!(next.as_deref(), Some("refunded 1999"));
    let twice = CreateRefund::new().payment_intent(pi.id.as_str()).send(&client).await;
    assert!(matches!(twice, Err(StripeError::Stripe(_, 400))), "no refund beyond the charge: {twice:?}");
    assert_eq!(stripe.refunds().len(), 1);
    let listed = ListRefund::new().send(&client).await.expect("the stand-in answers the Stripe call");
    assert_eq!(listed.data.iter().map(|r| r.amount).collect::<Vec<_>>(), vec![1999]);
}

/// Charges `n` PaymentIntents through the client; their ids, newest first.
async fn charged(client: &Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let pi = charge(&format!("clm_page_{i}"), "pm_card_visa").send(client).await;
        ids.push(pi.expect("the stand-in charges").id.to_string());
    }
    ids.reverse();
    ids
}

fn code_of(result: Result<impl std::fmt::Debug, StripeError>) -> (u16, Option<String>, Option<String>) {
    match result {
        Err(StripeError::Stripe(err, status)) => {
            (status, err.code.as_ref().map(|c| c.as_str().to_owned()), err.param.clone())
        }
        other => panic!("expected a Stripe error: {other:?}"),
    }
}

#[tokio::test]
async fn the_list_pager_sees_every_payment_intent_once_newest_first() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    let newest_first = charged(&client, 25).await;

    let paged: Vec<String> = ListPaymentIntent::new()
        .limit(4)
        .paginate()
        .stream(&client)
        .map_ok(|pi| pi.id.to_string())
        .try_collect()
        .await
        .expect("paging");
    assert_eq!(paged, newest_first, "all 25, each once, newest first");

    // Stripe's default page is 10, and says there is more.
    let first = ListPaymentIntent::new().send(&client).await.expect("the stand-in answers the Stripe call");
    let ids: Vec<String> = first.data.iter().map(|pi| pi.id.to_string()).collect();
    assert_eq!(
        (ids.as_slice(), first.has_more, first.url.as_str()),
        (&newest_first[..10], true, "/v1/payment_intents")
    );
    let last = ListPaymentIntent::new().starting_after(newest_first[19].as_str()).limit(10).send(&client).await;
    let last = last.expect("the stand-in answers the Stripe call");
    let ids: Vec<String> = last.data.iter().map(|pi| pi.id.to_string()).collect();
    assert_eq!((ids.as_slice(), last.has_more), (&newest_first[20..], false));

    // `ending_before`: the objects just newer than the cursor, newest first.
    let before = ListPaymentIntent::new().ending_before(newest_first[13].as_str()).limit(3).send(&client).await;
    let before = before.expect("the stand-in answers the Stripe call");
    let ids: Vec<String> = before.data.iter().map(|pi| pi.id.to_string()).collect();
    assert_eq!((ids.as_slice(), before.has_more), (&newest_first[10..13], true));
    let top = ListPaymentIntent::new().ending_before(newest_first[2].as_str()).send(&client).await;
    let top = top.expect("the stand-in answers the Stripe call");
    let ids: Vec<String> = top.data.iter().map(|pi| pi.id.to_string()).collect();
    assert_eq!((ids.as_slice(), top.has_more), (&newest_first[..2], false));

    // Out-of-range limits and unknown cursors are Stripe's 400s.
    for limit in [0, 101] {
        let (status, _, param) = code_of(ListPaymentIntent::new().limit(limit).send(&client).await);
        assert_eq!((status, param.as_deref()), (400, Some("limit")), "limit {limit}");
    }
    let unknown = ListPaymentIntent::new().starting_after("pi_unknown").send(&client).await;
    assert_eq!(code_of(unknown), (400, Some("resource_missing".into()), Some("starting_after".into())));
    let unknown = ListPaymentIntent::new().ending_before("pi_unknown").send(&client).await;
    assert_eq!(code_of(unknown), (400, Some("resource_missing".into()), Some("ending_before".into())));
}

#[tokio::test]
async fn the_refund_list_pages_newest_first() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    let pi = charge("clm_refunds", "pm_card_visa").send(&client).await.expect("the stand-in answers the Stripe call");
    let mut newest_first = Vec::new();
    for _ in 0..25 {
        let refund = CreateRefund::new().payment_intent(pi.id.as_str()).amount(1).send(&client).await;
        newest_first.push(refund.expect("the stand-in refunds").id.to_string());
    }
    newest_first.reverse();
    let paged: Vec<String> = ListRefund::new()
        .limit(7)
        .paginate()
        .stream(&client)
        .map_ok(|r| r.id.to_string())
        .try_collect()
        .await
        .expect("paging");
    assert_eq!(paged, newest_first);
    let before = ListRefund::new().ending_before(newest_first[5].as_str()).limit(2).send(&client).await;
    let before = before.expect("the stand-in answers the Stripe call");
    let ids: Vec<String> = before.data.iter().map(|r| r.id.to_string()).collect();
    assert_eq!((ids.as_slice(), before.has_more, before.url.as_str()), (&newest_first[3..5], true, "/v1/refunds"));
}

#[tokio::test]
async fn search_results_page_through_next_page_until_it_is_null() {
    let stripe = standin(None).await;
    let client = client(&stripe, Duration::from_secs(5));
    let newest_first = charged(&client, 25).await;
    let query = "status:'succeeded'";

    let paged: Vec<String> = SearchPaymentIntent::new(query)
        .limit(6)
        .paginate()
        .stream(&client)
        .map_ok(|pi| pi.id.to_string())
        .try_collect()
        .await
        .expect("paging");
    assert_eq!(paged, newest_first);

    // By hand: `next_page` leads on, and is null on the last page.
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = SearchPaymentIntent::new(query).limit(10);
        if let Some(token) = page.take() {
            request = request.page(token);
        }
        let result = request.send(&client).await.expect("the stand-in answers the Stripe call");
        pages += 1;
        seen.extend(result.data.iter().map(|pi| pi.id.to_string()));
        assert_eq!(result.has_more, result.next_page.is_some(), "has_more and next_page agree");
        match result.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
        assert!(pages < 10, "search paging never ends");
    }
    assert_eq!((pages, seen), (3, newest_first));
    let (status, _, param) = code_of(SearchPaymentIntent::new(query).page("not-a-page").send(&client).await);
    assert_eq!((status, param.as_deref()), (400, Some("page")));
    let (status, _, param) = code_of(SearchPaymentIntent::new(query).limit(101).send(&client).await);
    assert_eq!((status, param.as_deref()), (400, Some("limit")));
}
