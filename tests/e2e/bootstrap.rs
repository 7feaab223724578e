//! The run command's database bootstrap: with no URL and no local server, Gavel
//! starts a private cluster from the installed PostgreSQL binaries.

use std::process::Command;

#[test]
fn without_a_url_or_local_server_gavel_starts_a_private_cluster() {
    let dir = std::env::temp_dir().join(format!("gavel-pg-{}", uuid::Uuid::new_v4().simple()));
    let data = dir.join("pgdata");
    let migrate = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
            .arg("migrate")
            .env_remove("DATABASE_URL")
            .env("GAVEL_DATABASE__PROBE_LOCAL", "false")
            .env("GAVEL_DATABASE__DATA_DIR", &data)
            .env("GAVEL_LOG", "info")
            .output()
            .expect("run gavel");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{what}: {stderr}");
        stderr
    };
    let first = migrate("first start");
    assert!(first.contains("started a private PostgreSQL cluster"), "{first}");
    assert!(data.join("PG_VERSION").exists());
    // A second run finds the running cluster and reuses it.
    let second = migrate("second start");
    assert!(!second.contains("initialising"), "{second}");

    let stop = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); \
             if [ \"$(id -u)\" = 0 ]; then runuser -u postgres -- $bin/pg_ctl -D {0} -m fast stop; \
             else $bin/pg_ctl -D {0} -m fast stop; fi",
            data.display()
        ))
        .output()
        .expect("run pg_ctl");
    assert!(stop.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stop.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
