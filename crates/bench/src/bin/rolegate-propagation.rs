//! `rolegate-propagation`: how long a connector takes to make an activation real in
//! PostgreSQL, and to take it away at its end (issue 13; docs/benchmarks.md "Connectors").
//!
//! It creates throwaway roles on a PostgreSQL server (a managed target, the connector's
//! least-privilege account, one login role per person), starts `rolegate serve` on a fresh
//! SQLite file (or `--database`, say a tenant `rolegate seed` filled) with a `postgresql`
//! connector for them, makes each person eligible, then
//! activates one person every `--interval-ms` for `--seconds` seconds each while a second
//! connection polls `pg_auth_members` every millisecond. It reports, over all people:
//! **activation → grant visible** (from sending the request until the member appears) and
//! **end → revoke visible** (from the assignment's end instant until the member is gone).
//! Everything it created is dropped at the end.

use anyhow::{Context, bail};
use clap::Parser;
use rolegate_bench::{mfa_token, percentiles};
use rolegate_core::clock::{Clock, SystemClock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Activation-to-grant and end-to-revoke propagation of a postgresql connector")]
struct Args {
    /// The `rolegate` binary to start.
    #[arg(long, default_value = "target/release/rolegate")]
    rolegate: String,
    /// A PostgreSQL superuser connection (creates and drops the run's roles).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// People activated, one each.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Milliseconds between two activations.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
    /// How long each activation lasts, in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Loopback port of the server.
    #[arg(long, default_value_t = 18095)]
    port: u16,
    /// The database the server runs on (for instance one `rolegate seed` filled, to
    /// measure at scale); default a fresh SQLite file.
    #[arg(long)]
    database: Option<String>,
    /// Writes the server's log (its standard error) here (with `RUST_LOG=rolegate::provisioning=debug`,
    /// each planning pass's time).
    #[arg(long)]
    server_log: Option<std::path::PathBuf>,
}

/// Member → (first seen, first gone after that), in epoch microseconds.
type Sightings = HashMap<String, (i64, Option<i64>)>;

const SECRET: &str = "propagation-secret-0123456789";
const ADMIN: &str = "bench-admin";

/// A wall-clock instant in microseconds since the epoch.
fn now_micros() -> i64 {
    SystemClock.now().as_microsecond()
}

/// Calls the server; the JSON answer, after checking the status is `want`.
fn call(
    agent: &ureq::Agent,
    origin: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
    want: u16,
) -> anyhow::Result<Value> {
    let url = format!("{origin}{path}");
    let auth = format!("Bearer {token}");
    let mut reply = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call()?,
        (_, Some(b)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(b)?,
        (_, None) => agent
            .post(&url)
            .header("Authorization", &auth)
            .send_empty()?,
    };
    let status = reply.status().as_u16();
    let text = reply.body_mut().read_to_string()?;
    if status != want {
        bail!("{method} {path}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The run's roles on the PostgreSQL server, dropped on drop.
struct Roles {
    admin: postgres::Client,
    prefix: String,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names: Vec<String> = self
            .admin
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
                &[&self.prefix],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        for n in names {
            let _ = self
                .admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {n}"));
        }
    }
}

/// The server, stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("rgprop{}", now_micros() % 1_000_000);
    let mut roles = Roles {
        admin: postgres::Client::connect(&args.postgres, postgres::NoTls)
            .context("connect to PostgreSQL")?,
        prefix: prefix.clone(),
    };
    let mut sql = format!(
        "CREATE ROLE {prefix}_app_admin NOLOGIN; CREATE ROLE {prefix}_prov LOGIN NOINHERIT; \
         GRANT {prefix}_app_admin TO {prefix}_prov WITH ADMIN OPTION;"
    );
    for i in 0..args.count {
        sql.push_str(&format!("CREATE ROLE {prefix}_u{i} LOGIN;"));
    }
    roles.admin.batch_execute(&sql).context("create roles")?;

    let rest = args.postgres.rsplit_once('@').map_or("", |(_, r)| r);
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir)?;
    // A subscription of this run's own, so a reused database takes it as new.
    let sub_arm = format!(
        "/subscriptions/0f2c5a6e-1b3d-4e5f-8a9b-{:012}",
        now_micros().rem_euclid(1_000_000_000_000)
    );
    let sub_arm = sub_arm.as_str();
    let file = dir.join("connectors.toml");
    std::fs::write(
        &file,
        format!(
            "[connectors.pg]\nkind = \"postgresql\"\nurl = \"postgresql://{prefix}_prov@{rest}\"\n\
             principal = [\"userNameLocalPart\"]\n\
             [[connectors.pg.rules]]\nrole = \"Contributor\"\nscope = \"{sub_arm}\"\n\
             target = \"{prefix}_app_admin\"\n"
        ),
    )?;
    let listen = format!("127.0.0.1:{}", args.port);
    let mut child = Command::new(&args.rolegate)
        .args(["serve", "--database"])
        .arg(
            args.database
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("rolegate.db").display())),
        )
        .args([
            "--auth-hs256-secret",
            SECRET,
            "--admin",
            ADMIN,
            "--listen",
            &listen,
        ])
        .args(["--rate-limit-per-ip", "0", "--rate-limit-per-subject", "0"])
        .arg("--connectors")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(match &args.server_log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("create {}", path.display()))?,
            ),
            None => Stdio::null(),
        })
        .spawn()
        .with_context(|| format!("start {}", args.rolegate))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening") => break,
            Some(Ok(_)) => {}
            _ => bail!("the server stopped before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});

    let origin = format!("http://{listen}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let admin = mfa_token(SECRET, ADMIN)?;
    let pim = "/beta/privilegedAccess/azureResources";
    call(
        &agent,
        &origin,
        "POST",
        &format!("{pim}/resources/register"),
        &admin,
        Some(&json!({"externalId": sub_arm})),
        200,
    )?;
    let found = call(
        &agent,
        &origin,
        "GET",
        &format!("{pim}/resources?$filter=externalId%20eq%20'{sub_arm}'"),
        &admin,
        None,
        200,
    )?;
    let sub = found["value"][0]["id"]
        .as_str()
        .context("the registered subscription")?
        .to_string();
    let defs = call(
        &agent,
        &origin,
        "GET",
        &format!("{pim}/resources/{sub}/roleDefinitions?$filter=displayName%20eq%20'Contributor'"),
        &admin,
        None,
        200,
    )?;
    let contributor = defs["value"][0]["id"]
        .as_str()
        .context("Contributor")?
        .to_string();
    let request = |kind: &str, state: &str, subject: &str, duration: &str| {
        json!({"type": kind, "assignmentState": state, "resourceId": sub,
               "roleDefinitionId": contributor, "subjectId": subject, "reason": "propagation benchmark",
               "schedule": {"type": "Once", "duration": duration}})
    };
    let mut people = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let user = call(
            &agent,
            &origin,
            "POST",
            "/scim/v2/Users",
            &admin,
            Some(
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                         "userName": format!("{prefix}_u{i}@bench.test")}),
            ),
            201,
        )?;
        let id = user["id"].as_str().context("user id")?.to_string();
        call(
            &agent,
            &origin,
            "POST",
            &format!("{pim}/roleAssignmentRequests"),
            &admin,
            Some(&request("AdminAdd", "Eligible", &id, "P1D")),
            201,
        )?;
        people.push((
            format!("{prefix}_u{i}"),
            id.clone(),
            mfa_token(SECRET, &id)?,
        ));
    }

    // The watcher: first time each member is seen, and first time it is gone after that.
    let seen: Arc<Mutex<Sightings>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
        let mut pg = postgres::Client::connect(&args.postgres, postgres::NoTls)?;
        let target = format!("{prefix}_app_admin");
        std::thread::spawn(move || -> anyhow::Result<()> {
            let q = pg.prepare(
                "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1",
            )?;
            while !stop.load(Ordering::Relaxed) {
                let members: Vec<String> =
                    pg.query(&q, &[&target])?.iter().map(|r| r.get(0)).collect();
                let at = now_micros();
                let mut map = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for m in &members {
                    map.entry(m.clone()).or_insert((at, None));
                }
                for (name, (_, gone)) in map.iter_mut() {
                    if gone.is_none() && !members.contains(name) {
                        *gone = Some(at);
                    }
                }
                drop(map);
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
    };

    let started = std::time::Instant::now();
    let duration = format!("PT{}S", args.seconds);
    // principal → (sent, end instant), in epoch microseconds.
    let mut sent: HashMap<String, (i64, i64)> = HashMap::new();
    for (i, (principal, id, tok)) in people.iter().enumerate() {
        let slot = Duration::from_millis(args.interval_ms * i as u64);
        if let Some(wait) = slot.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let t0 = now_micros();
        let r = call(
            &agent,
            &origin,
            "POST",
            &format!("{pim}/roleAssignmentRequests"),
            tok,
            Some(&request("UserAdd", "Active", id, &duration)),
            201,
        )?;
        let start = r["schedule"]["startDateTime"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map_or(t0, |t| t.as_microsecond());
        sent.insert(
            principal.clone(),
            (t0, start + i64::from(args.seconds) * 1_000_000),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(args.seconds) + 30);
    loop {
        let done = seen
            .lock()
            .map(|m| {
                sent.keys()
                    .all(|p| m.get(p).is_some_and(|(_, g)| g.is_some()))
            })
            .unwrap_or(true);
        if done || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    drop(server);

    let map = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (mut grant, mut revoke, mut missing) = (Vec::new(), Vec::new(), 0);
    for (principal, (t0, end)) in &sent {
        match map.get(principal) {
            Some((first, gone)) => {
                grant.push(u64::try_from(first - t0).unwrap_or(0));
                match gone {
                    Some(g) => revoke.push(u64::try_from(g - end).unwrap_or(0)),
                    None => missing += 1,
                }
            }
            None => missing += 1,
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    for (name, samples) in [
        ("activation -> grant visible", &mut grant),
        ("end -> revoke visible", &mut revoke),
    ] {
        let n = samples.len();
        match percentiles(samples) {
            Some(p) => println!(
                "{name}: n={n} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.max)
            ),
            None => println!("{name}: no samples"),
        }
    }
    if missing > 0 {
        bail!("{missing} activations were not granted and revoked within the wait");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
