//! PostgreSQL probe: a real connection and `SELECT 1`, plus recovery state and replay lag.

use tocsin_config::probes::PostgresProbe;
use tocsin_sampling::Family;

use crate::{gauge, Failure, Reason};

pub(crate) async fn run(spec: &PostgresProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let (host, port) = spec
        .address
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p)))
        .ok_or_else(|| Failure::new(Reason::Error, "target is not HOST:PORT"))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(&spec.user)
        .dbname(&spec.dbname)
        .application_name("tocsin-agent");
    if let Some(pw) = &spec.password {
        cfg.password(pw.expose());
    }
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(classify)?;
    let conn = tokio::spawn(conn);
    let result = async {
        let row = client.query_one("SELECT 1, pg_is_in_recovery(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8", &[])
            .await
            .map_err(classify)?;
        let one: i32 = row.get(0);
        if one != 1 {
            return Err(Failure::new(Reason::Protocol, format!("SELECT 1 returned {one}")));
        }
        let recovery: bool = row.get(1);
        out.push(gauge("probe_postgres_in_recovery", "1 when the server is a standby in recovery.", if recovery { 1.0 } else { 0.0 }));
        if recovery {
            if let Some(lag) = row.get::<_, Option<f64>>(2) {
                out.push(gauge(
                    "probe_postgres_replication_lag_seconds",
                    "Seconds since the last transaction replayed on this standby.",
                    lag,
                ));
            }
        }
        Ok(())
    }
    .await;
    conn.abort();
    result
}

fn classify(e: tokio_postgres::Error) -> Failure {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let reason = match *db.code() {
            SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                Reason::Auth
            }
            _ => Reason::Protocol,
        };
        return Failure::new(reason, db.message().to_string());
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Failure::new(Reason::of_io(io), e.to_string());
        }
        src = s.source();
    }
    Failure::new(Reason::Protocol, e.to_string())
}
