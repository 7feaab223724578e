//! The test harness: a fresh real database per test (cloned from a migrated
//! template), the real application started on port 0, and a small typed client.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use gavel::{Application, Config, Role};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

pub use crate::client::{Order, Sale};

/// `admin.token` of `config/test.toml`.
pub const OPERATOR_TOKEN: &str = "gavel-test-operator-token";

/// The PostgreSQL server the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("GAVEL_TEST_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A migrated template database, built once per test run.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let admin = format!("{}/postgres", server_url());
            let mut conn = PgConnection::connect(&admin).await.expect("the test PostgreSQL server accepts connections");
            let version = gavel_domain::MIGRATOR.iter().map(|m| m.version).max().expect("at least one migration");
            let checksum: u64 = gavel_domain::MIGRATOR
                .iter()
                .flat_map(|m| m.checksum.iter().copied())
                .fold(14_695_981_039_346_656_037, |h, b| (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211));
            let name = format!("gavel_tmpl_{version}_{:x}", checksum & 0xffff_ffff);
            sqlx::query("SELECT pg_advisory_lock(8675309)").execute(&mut conn).await.expect("take the template lock");
            // Databases left by earlier runs (a busy one is skipped).
            let stale: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gavel\\_test\\_%'")
                    .fetch_all(&mut conn)
                    .await
                    .expect("list stale test databases");
            for db in stale {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\"")))
                    .execute(&mut conn)
                    .await;
            }
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .expect("look the template up");
            if !exists {
                let building = format!("{name}_building");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{building}\"")))
                    .execute(&mut conn)
                    .await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{building}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create the template database");
                let pool =
                    PgPool::connect(&format!("{}/{building}", server_url())).await.expect("connect to the template");
                gavel::database::migrate(&pool).await.expect("migrate the template");
                pool.close().await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("publish the template");
            }
            sqlx::query("SELECT pg_advisory_unlock(8675309)")
                .execute(&mut conn)
                .await
                .expect("release the template lock");
            name
        })
        .await
}

/// A fresh, migrated database; returns its URL.
pub async fn fresh_database() -> String {
    let template = template().await;
    let name = format!("gavel_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn =
        PgConnection::connect(&format!("{}/postgres", server_url())).await.expect("connect to the test server");
    // CREATE … TEMPLATE fails while another session is connected to the template;
    // only builders connect to it, briefly, so a short retry is enough.
    for attempt in 0..50 {
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
            Ok(_) => break,
            Err(e) if attempt < 49 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    format!("{}/{name}", server_url())
}

pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::for_environment("test").expect("config/test.toml loads");
    config.database.url = Some(db_url.to_owned());
    config.http.addr = "127.0.0.1:0".parse().expect("a socket address");
    config
}

pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build()
            .expect("an HTTP client")
    })
}

/// One running Gavel (in this process) over a test database.
pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Clone)]
pub struct Merchant {
    pub key: String,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Response {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn is_problem(&self) -> bool {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
            && self.body["status"].as_u64() == Some(u64::from(self.status.as_u16()))
            && self.body["detail"].is_string()
    }
}

impl TestApp {
    /// API and workers, on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_on(&fresh_database().await, &[Role::Api, Role::Workers], |_| {}).await
    }

    pub async fn spawn_on(db_url: &str, roles: &[Role], tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(db_url);
        tweak(&mut config);
        let app = Application::build(config, roles).await.expect("gavel starts");
        let base = app.addr().map(|a| format!("http://{a}")).unwrap_or_default(); // none without the API role
        let pool = app.pool().clone();
        let stop = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        Self { base, pool, stop }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = client().request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    pub async fn post(&self, path: &str, auth: Option<&str>, body: Value) -> Response {
        self.request(reqwest::Method::POST, path, auth, Some(body)).await
    }

    pub async fn get(&self, path: &str, auth: Option<&str>) -> Response {
        self.request(reqwest::Method::GET, path, auth, None).await
    }

    /// `/metrics`, with the test configuration's operator token.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics", Some(OPERATOR_TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        r.raw
    }

    pub async fn merchant(&self) -> Merchant {
        let m = gavel_domain::merchants::create(&self.pool, "Test Merchant", None).await.expect("create a merchant");
        Merchant { key: m.api_key }
    }

    pub async fn product(&self, merchant: &Merchant) -> String {
        self.as_(&merchant.key).create_product("Sneakers").await.expect("create a product").id
    }

    /// A sale of a new product, with `overrides` laid over sensible defaults.
    pub async fn sale(&self, merchant: &Merchant, overrides: Value) -> Sale {
        let product = self.product(merchant).await;
        let mut body = json!({
            "product_id": product, "price": 1999, "currency": "usd", "inventory": 10,
            "starts_at": Utc::now().to_rfc3339(),
        });
        if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
            b.extend(o.clone());
        }
        self.as_(&merchant.key).create_sale(body).await.expect("create a sale")
    }

    /// A sale that is already active (its start job has run).
    pub async fn active_sale(&self, merchant: &Merchant, overrides: Value) -> String {
        let sale = self.sale(merchant, overrides).await;
        self.wait_for_status(merchant, &sale.id, "active", Duration::from_secs(10)).await;
        sale.id
    }

    /// The sale as its merchant sees it once it has `status`.
    pub async fn wait_for_status(&self, merchant: &Merchant, sale: &str, status: &str, within: Duration) -> Sale {
        let merchant = self.as_(&merchant.key);
        let api = &merchant;
        eventually(&format!("sale {sale} becomes {status}"), within, move || async move {
            api.sale(sale).await.ok().filter(|s| s.status == status)
        })
        .await
    }

    /// `n` buyers signed up over the API; returns their tokens.
    pub async fn buyers(&self, n: usize) -> Vec<String> {
        futures::stream::iter(0..n)
            .map(|i| async move {
                let email = format!("buyer{i}-{}@example.com", uuid::Uuid::new_v4().simple());
                self.anonymous().sign_up(&email, "correct horse").await.expect("a buyer signs up").token
            })
            .buffer_unordered(32)
            .collect()
            .await
    }

    /// The stock invariant of `sale` (see [`invariant_holds`]).
    pub async fn invariant_holds(&self, sale: &str) -> bool {
        invariant_holds(&self.pool, sale).await
    }

    /// Makes every pending job of `queue` due now and waits until the
    /// workers have run them (see [`run_due_jobs`]).
    pub async fn run_due_jobs(&self, queue: &str) {
        run_due_jobs(&self.pool, queue, Duration::from_secs(20)).await;
    }
}

/// The one stock invariant every test checks, counting every state a unit can
/// be in: `available + held + sold = inventory`, where `held` counts the live
/// holds — claims `held` or `checking_out` (a claim under checkout keeps its
/// unit held until the payment settles) — and `sold` counts the claims
/// `checked_out`.
pub async fn invariant_holds(pool: &PgPool, sale: &str) -> bool {
    sqlx::query_scalar(
        "SELECT inventory = available + held + sold
                AND available >= 0 AND held >= 0 AND sold >= 0
                AND held = (SELECT count(*) FROM claims c
                            WHERE c.sale_id = s.id AND c.status IN ('held', 'checking_out'))
                AND sold = (SELECT count(*) FROM claims c WHERE c.sale_id = s.id AND c.status = 'checked_out')
         FROM sales s WHERE id = $1",
    )
    .bind(uuid_of(sale))
    .fetch_one(pool)
    .await
    .expect("the invariant query runs")
}

/// How often [`eventually`] and [`run_due_jobs`] look again.
const POLL: Duration = Duration::from_millis(25);

/// Waits for `probe` to answer `Some`, looking every few milliseconds, and
/// returns that answer; fails the test (naming `what`) after `within`. For
/// waiting on an event — a status, a row, a call to a stand-in — instead of
/// sleeping for a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Drives `queue`'s workflows to rest: makes every pending job (and every
/// failed one due for a retry) due now, so a backoff or a scheduled run does
/// not make the test wait, and returns once no job of the queue is pending,
/// queued or running — follow-up jobs included. The jobs' own guards decide
/// what running early does (a guard on the sale's times still waits for
/// them). Needs a process with the workers role on the database.
pub async fn run_due_jobs(pool: &PgPool, queue: &str, within: Duration) {
    eventually(&format!("the {queue} jobs have run"), within, move || async move {
        sqlx::query(
            "UPDATE apalis.jobs SET run_at = now() - interval '1 millisecond'
             WHERE job_type = $1 AND run_at > now()
               AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))",
        )
        .bind(queue)
        .execute(pool)
        .await
        .expect("make the jobs due");
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1
               AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))",
        )
        .bind(queue)
        .fetch_one(pool)
        .await
        .expect("count the open jobs");
        (open == 0).then_some(())
    })
    .await;
}

pub async fn send(req: reqwest::RequestBuilder) -> Response {
    let res = req.send().await.expect("the request reaches the server");
    let status = res.status();
    let headers = res.headers().clone();
    let raw = res.text().await.expect("the answer has a readable body");
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Response { status, headers, body, raw }
}

/// The UUID inside a prefixed id, for SQL.
pub fn uuid_of(id: &str) -> uuid::Uuid {
    let hex = id.rsplit('_').next().expect("rsplit yields at least one part");
    uuid::Uuid::try_parse(hex).expect("a prefixed id ends in 32 hex digits")
}

pub fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

/// `gavel serve --role workers` as a child process on `db`.
pub fn worker_process(db: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["serve", "--role", "workers"])
        .env("DATABASE_URL", db)
        .env("GAVEL_ENV", "test")
        .env("GAVEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gavel")
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
