//! Finding a database to run on, and preparing it.
//!
//! 1. `DATABASE_URL` (or `database.url`) wins.
//! 2. Otherwise a local PostgreSQL on the default socket or 127.0.0.1:5432, if
//!    one answers: Gavel creates its database (`database.name`) there.
//! 3. Otherwise a private cluster from the installed PostgreSQL binaries
//!    (initdb/pg_ctl) under `database.data_dir`, on a free port.
//! 4. No PostgreSQL installed: one line saying how to get it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config;

/// The URL to connect to, starting a private cluster if need be.
pub async fn resolve_url(cfg: &config::Database) -> anyhow::Result<String> {
    if let Some(url) = &cfg.url {
        return Ok(url.clone());
    }
    let local = ["postgres://postgres@%2Fvar%2Frun%2Fpostgresql", "postgres://postgres@127.0.0.1:5432"];
    for server in local.iter().filter(|_| cfg.probe_local) {
        if let Ok(url) = ensure_database(server, &cfg.name).await {
            tracing::info!(server, "using the local PostgreSQL server");
            return Ok(url);
        }
    }
    private_cluster(cfg).await
}

/// Connects to `server`'s maintenance database and creates `name` if missing.
async fn ensure_database(server: &str, name: &str) -> anyhow::Result<String> {
    let admin = PgConnectOptions::from_str(&format!("{server}/postgres"))?;
    let mut conn = tokio::time::timeout(Duration::from_secs(2), admin.connect()).await??;
    let exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#, name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // The one dynamic statement: a database's name is an identifier, which
        // no statement can take as a bind parameter, so the text is built here
        // (quoted, with any quote doubled).
        let quoted = name.replace('"', "\"\"");
        // A racing process may create it first; that is fine.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\""))).execute(&mut conn).await;
    }
    conn.close().await?;
    Ok(format!("{server}/{name}"))
}

fn pg_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// initdb refuses to run as root; there we run the server binaries as the
/// `postgres` system user.
fn as_server_user(bin: &Path, args: &[&str], data_dir: &Path) -> anyhow::Result<Command> {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false);
    if !root {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        return Ok(cmd);
    }
    let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(data_dir).status()?;
    if !chown.success() {
        bail!("running as root and could not hand {} to the postgres user", data_dir.display());
    }
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(bin).args(args);
    Ok(cmd)
}

async fn private_cluster(cfg: &config::Database) -> anyhow::Result<String> {
    let Some(bin) = pg_bindir() else {
        bail!(
            "no PostgreSQL found: set DATABASE_URL, start a local server, or install one (e.g. `apt-get install postgresql`)"
        );
    };
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let data_dir = cfg.data_dir.canonicalize()?;
    let data = data_dir.to_string_lossy().into_owned();
    if !data_dir.join("PG_VERSION").exists() {
        tracing::info!(dir = %data, "initialising a private PostgreSQL cluster");
        let status = as_server_user(
            &bin.join("initdb"),
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            &data_dir,
        )?
        .stdout(std::process::Stdio::null())
        .status()?;
        if !status.success() {
            bail!("initdb failed for {data}");
        }
    }
    let port_file = data_dir.join("gavel.port");
    if let Ok(port) = std::fs::read_to_string(&port_file) {
        let server = format!("postgres://postgres@127.0.0.1:{}", port.trim());
        if let Ok(url) = ensure_database(&server, &cfg.name).await {
            return Ok(url);
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let opts = format!("-p {port} -k {data} -c listen_addresses=127.0.0.1");
    let log = format!("{data}/server.log");
    let status =
        as_server_user(&bin.join("pg_ctl"), &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"], &data_dir)?
            .stdout(std::process::Stdio::null())
            .status()?;
    if !status.success() {
        bail!("pg_ctl could not start the private cluster; see {log}");
    }
    std::fs::write(&port_file, port.to_string())?;
    tracing::info!(port, dir = %data, "started a private PostgreSQL cluster (stop it with pg_ctl -D {data} stop)");
    ensure_database(&format!("postgres://postgres@127.0.0.1:{port}"), &cfg.name).await
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = connect_options(url)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| "connecting to PostgreSQL")
}

/// The URL's options, with one default of Gavel's own: a server on a
/// loopback address, with no `sslmode` in the URL or `PGSSLMODE`, is spoken
/// to without TLS (sqlx's default would be `prefer`).
///
/// Why: sqlx 0.9.0 does not set `TCP_NODELAY` on its sockets (upstream
/// issue transact-rs/sqlx#4335; the fix, #4336, is not in a release yet).
/// A statement larger than one TLS record (16 KiB: a batch of ~100 bids or
/// claims) goes out as two writes, and the second waits for the server's
/// delayed ACK — about 40 ms per batch. On loopback TLS protects nothing
/// (the traffic never leaves the host), so Gavel leaves it off there; an
/// explicit `sslmode` is always obeyed. Measured on the bid benchmark:
/// README, "Bids".
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let names_ssl_mode = url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some();
    if !names_ssl_mode && is_loopback(options.get_host()) {
        return Ok(options.ssl_mode(PgSslMode::Disable));
    }
    Ok(options)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Applies Gavel's migrations and apalis's job tables.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // Both migrators take the same advisory lock, so concurrent starts are safe.
    gavel_workers::setup(pool).await?;
    gavel_domain::MIGRATOR.run(pool).await.context("applying migrations")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    fn mode(url: &str) -> PgSslMode {
        connect_options(url).expect("a valid URL").get_ssl_mode()
    }

    #[test]
    fn loopback_without_an_sslmode_goes_without_tls_and_an_explicit_one_is_obeyed() {
        if std::env::var_os("PGSSLMODE").is_some() {
            return; // the environment names a mode: nothing of ours applies
        }
        assert!(matches!(mode("postgres://u@127.0.0.1:5432/db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@localhost/db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@[::1]:5432/db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@127.0.0.1:5432/db?sslmode=require"), PgSslMode::Require));
        assert!(matches!(mode("postgres://u@db.example.com/db"), PgSslMode::Prefer));
    }
}
