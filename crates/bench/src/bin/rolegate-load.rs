//! `rolegate-load`: an HTTP load generator for a running Rolegate seeded by `rolegate seed`.
//! Each scenario runs for a fixed time on `--connections` keep-alive connections (one
//! client thread each) and reports throughput and latency percentiles (and the server's
//! memory when given its pid).
//!
//! Closed loop (the default): each connection sends its next request when the previous
//! answer arrived. Open loop (`--rate R`): requests are due at R a second in all, whatever
//! the server does, and each latency runs from when its request was *due*, not when a
//! free connection got to send it, so a stalled server shows in the percentiles instead of
//! slowing the generator down (coordinated omission, as `wrk2` corrects it).

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use rolegate_bench::{mfa_token as token, percentiles};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// `GET /healthz`: the ceiling of the server's HTTP path, the other scenarios' yardstick.
    Healthz,
    /// `GET resources/{id}` as a user eligible there (R1), one per seeded eligibility.
    ReadResource,
    /// `GET roleAssignments?$filter=subjectId eq '<me>'` as that user.
    MyAssignments,
    /// `GET resources/{id}/roleAssignments?$expand=subject,roleDefinition($expand=resource)` as an admin.
    ResourceAssignments,
    /// `POST roleAssignmentRequests` (UserAdd, one per seeded eligible assignment).
    Activate,
    /// The portal's "My roles" (`GET /ui/`) of the seeded requester: 50 eligible, 10 active.
    PortalMyRoles,
    /// The portal's "Approvals" (`GET /ui/approvals`) of the seeded approver: 50 pending.
    PortalApprovals,
    /// `POST /access/v1/evaluation` as the enforcement point `--pep` about the seeded
    /// eligible assignments' subjects and resources, alternating an operation their role
    /// grants once activated and one it does not (run after `activate` for about half
    /// permitted).
    AuthzenEvaluation,
    /// `POST /access/v1/evaluations` with 100 such items.
    AuthzenBatch,
}

#[derive(Parser, Debug)]
#[command(about = "HTTP load generator for Rolegate")]
struct Args {
    /// Server origin.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    origin: String,
    /// The server's HS256 secret.
    #[arg(long, env = "ROLEGATE_AUTH_HS256_SECRET")]
    secret: String,
    /// A tenant administrator id known to the server.
    #[arg(long, default_value = "bench-admin")]
    admin: String,
    /// The manifest written by `rolegate seed`.
    #[arg(long, default_value = "bench-manifest.json")]
    manifest: std::path::PathBuf,
    /// Scenarios to run (all when omitted).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Keep-alive connections, one client thread each (issue 14 measures at 32).
    #[arg(long, alias = "threads", default_value_t = 4)]
    connections: usize,
    /// Open loop: requests due per second in all (latency from when each was due); 0 for
    /// a closed loop.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Calls to skip at the start of each scenario (activations already used by a run).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// The enforcement point's subject (the server's `--authzen-client`).
    #[arg(long, default_value = "bench-pep")]
    pep: String,
    /// The server's pid, to report its memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// One prepared call.
struct Call {
    method: &'static str,
    path: String,
    /// The `Authorization` or `Cookie` header it carries.
    credential: (&'static str, String),
    body: Option<String>,
}

impl Call {
    /// A call carrying bearer `token`.
    fn bearer(method: &'static str, path: String, token: &str, body: Option<String>) -> Self {
        Self {
            method,
            path,
            credential: ("Authorization", format!("Bearer {token}")),
            body,
        }
    }
}

/// A portal session of `user_name`, through the development sign-in (the server runs on
/// an HS256 secret): the `Cookie` header value.
fn portal_session(origin: &str, user_name: &str) -> anyhow::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let resp = agent
        .post(&format!("{origin}/ui/signin"))
        .header("Origin", origin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!(
            "user_name={}&mfa=on",
            user_name.replace('@', "%40")
        ))?;
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with("rolegate_session="))
        })
        .map(str::to_string)
        .with_context(|| format!("signing {user_name} in to the portal: {}", resp.status()))
}

fn calls(args: &Args, manifest: &Value, scenario: Scenario) -> anyhow::Result<Vec<Call>> {
    let base = "/beta/privilegedAccess/azureResources";
    let list = |k: &str| manifest[k].as_array().cloned().unwrap_or_default();
    let admin = token(&args.secret, &args.admin)?;
    let mut out = Vec::new();
    match scenario {
        Scenario::Healthz => out.push(Call::bearer("GET", "/healthz".into(), &admin, None)),
        Scenario::ReadResource => {
            for a in list("activations") {
                let s = a["subjectId"].as_str().unwrap_or_default();
                let r = a["resourceId"].as_str().unwrap_or_default();
                let path = format!("{base}/resources/{r}");
                out.push(Call::bearer("GET", path, &token(&args.secret, s)?, None));
            }
        }
        Scenario::MyAssignments => {
            for u in list("users") {
                let u = u.as_str().unwrap_or_default();
                let path = format!("{base}/roleAssignments?$filter=subjectId%20eq%20'{u}'");
                out.push(Call::bearer("GET", path, &token(&args.secret, u)?, None));
            }
        }
        Scenario::ResourceAssignments => {
            for r in list("resources") {
                let r = r.as_str().unwrap_or_default();
                let path = format!(
                    "{base}/resources/{r}/roleAssignments?$expand=subject,roleDefinition($expand=resource)"
                );
                out.push(Call::bearer("GET", path, &admin, None));
            }
        }
        Scenario::Activate => {
            for a in list("activations") {
                let s = a["subjectId"].as_str().unwrap_or_default();
                let body = json!({
                    "type": "UserAdd", "assignmentState": "Active", "subjectId": s,
                    "resourceId": a["resourceId"], "roleDefinitionId": a["roleDefinitionId"],
                    "linkedEligibleRoleAssignmentId": a["eligibleId"], "reason": "load test",
                    "schedule": {"type": "Once", "duration": "PT1H"},
                });
                let path = format!("{base}/roleAssignmentRequests");
                let token = token(&args.secret, s)?;
                out.push(Call::bearer("POST", path, &token, Some(body.to_string())));
            }
        }
        Scenario::AuthzenEvaluation | Scenario::AuthzenBatch => {
            let pep = token(&args.secret, &args.pep)?;
            let questions: Vec<Value> = list("activations")
                .iter()
                .take(8_000)
                .enumerate()
                .map(|(i, a)| {
                    let op = if i % 2 == 0 {
                        "Microsoft.Resources/subscriptions/resourceGroups/read"
                    } else {
                        "Microsoft.Authorization/roleAssignments/write"
                    };
                    json!({"subject": {"type": "user", "id": a["subjectId"]},
                           "resource": {"type": "azureResource", "id": a["resourceId"]},
                           "action": {"name": op}})
                })
                .collect();
            if scenario == Scenario::AuthzenEvaluation {
                for q in questions {
                    let path = "/access/v1/evaluation".into();
                    out.push(Call::bearer("POST", path, &pep, Some(q.to_string())));
                }
            } else {
                for chunk in questions.chunks(100).filter(|c| c.len() == 100) {
                    let body = json!({"evaluations": chunk}).to_string();
                    out.push(Call::bearer(
                        "POST",
                        "/access/v1/evaluations".into(),
                        &pep,
                        Some(body),
                    ));
                }
            }
        }
        Scenario::PortalMyRoles | Scenario::PortalApprovals => {
            let (who, path) = if scenario == Scenario::PortalMyRoles {
                ("requester", "/ui/")
            } else {
                ("approver", "/ui/approvals")
            };
            let user = manifest["portal"][who]
                .as_str()
                .with_context(|| format!("the manifest names no portal {who} (seed again)"))?;
            let cookie = portal_session(&args.origin, user)?;
            out.push(Call {
                method: "GET",
                path: path.to_string(),
                credential: ("Cookie", cookie),
                body: None,
            });
        }
    }
    if out.is_empty() {
        bail!("the manifest has nothing for {scenario:?}");
    }
    Ok(out)
}

/// What one scenario measured.
struct Measured {
    requests: usize,
    per_second: f64,
}

fn run(args: &Args, scenario: Scenario, calls: Vec<Call>, yardstick: Option<f64>) -> Measured {
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(args.skip));
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    // AuthZEN answers: decisions seen, and how many permitted.
    let decisions = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let once = scenario == Scenario::Activate;
    // Only AuthZEN answers are searched: scanning every body (a page with `$expand` is
    // 129 KB) would spend the cores the server shares with this generator.
    let counts_decisions = matches!(
        scenario,
        Scenario::AuthzenEvaluation | Scenario::AuthzenBatch
    );
    let started = Instant::now();
    // Open loop: request i is due at `started + i / rate`.
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let skip = args.skip;
    let handles: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (calls, next, samples, errors, decisions, origin) = (
                Arc::clone(&calls),
                Arc::clone(&next),
                Arc::clone(&samples),
                Arc::clone(&errors),
                Arc::clone(&decisions),
                args.origin.clone(),
            );
            std::thread::spawn(move || {
                // A redirect (say, to the portal's sign-in) is a failure, not a success.
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .build()
                    .into();
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if once && i >= calls.len() {
                        break;
                    }
                    let c = &calls[i % calls.len()];
                    let url = format!("{origin}{}", c.path);
                    let t0 = match interval {
                        Some(every) => {
                            let due = started + every.mul_f64((i - skip) as f64);
                            if due >= deadline {
                                break;
                            }
                            if let Some(early) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(early);
                            }
                            due
                        }
                        None => Instant::now(),
                    };
                    let (name, value) = (c.credential.0, c.credential.1.as_str());
                    let result = match c.method {
                        "POST" => agent
                            .post(&url)
                            .header(name, value)
                            .header("Content-Type", "application/json")
                            .send(c.body.as_deref().unwrap_or("")),
                        _ => agent.get(&url).header(name, value).call(),
                    };
                    let ok = match result {
                        Ok(mut r) if counts_decisions => {
                            let body = r.body_mut().read_to_vec().unwrap_or_default();
                            let count = |needle: &[u8]| {
                                body.windows(needle.len()).filter(|w| *w == needle).count()
                            };
                            decisions[0].fetch_add(count(b"\"decision\":"), Ordering::Relaxed);
                            decisions[1].fetch_add(count(b"\"decision\":true"), Ordering::Relaxed);
                            r.status().is_success()
                        }
                        Ok(mut r) => {
                            let read =
                                std::io::copy(&mut r.body_mut().as_reader(), &mut std::io::sink());
                            read.is_ok() && r.status().is_success()
                        }
                        Err(_) => false,
                    };
                    mine.push(t0.elapsed().as_micros() as u64);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Ok(mut all) = samples.lock() {
                    all.extend(mine);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let n = all.len();
    let per_second = n as f64 / elapsed;
    // Throughput against `healthz` means something only when both ran flat out.
    let ratio = yardstick
        .filter(|_| args.rate == 0)
        .map_or("-".to_string(), |h| format!("{:.3}", per_second / h));
    match percentiles(&mut all) {
        Some(p) => println!(
            "| {scenario:?} | {n} | {} | {per_second:.0} | {ratio} | {:.2} | {:.2} | {:.2} | {:.2} |",
            errors.load(Ordering::Relaxed),
            p.p50 as f64 / 1000.0,
            p.p90 as f64 / 1000.0,
            p.p99 as f64 / 1000.0,
            p.max as f64 / 1000.0
        ),
        None => println!("| {scenario:?} | 0 | - | - | - | - | - | - | - |"),
    }
    let seen = decisions[0].load(Ordering::Relaxed);
    if seen > 0 {
        println!(
            "  ({} of {seen} decisions permitted)",
            decisions[1].load(Ordering::Relaxed)
        );
    }
    Measured {
        requests: n,
        per_second,
    }
}

fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "server memory: VmRSS {}, peak VmHWM {}",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&args.manifest)
            .with_context(|| format!("reading {}", args.manifest.display()))?,
    )?;
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::MyAssignments,
            Scenario::ResourceAssignments,
            Scenario::Activate,
        ]
    } else {
        args.scenario.clone()
    };
    println!(
        "| scenario | requests | non-2xx | req/s | ÷ healthz | p50 ms | p90 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // `healthz` run first (in the same invocation) is the yardstick of the ratio column.
    let mut yardstick = None;
    for s in scenarios {
        let c = calls(&args, &manifest, s)?;
        let m = run(&args, s, c, yardstick);
        if s == Scenario::Healthz && m.requests > 0 {
            yardstick = Some(m.per_second);
        }
    }
    if let Some(pid) = args.server_pid {
        println!("{}", memory(pid));
    }
    Ok(())
}
