//! The `postgresql` kind against the machine's real PostgreSQL (connectors.md §5.1): each
//! run creates its own roles (random names) and a least-privilege connector account with
//! ADMIN OPTION on the managed roles only, and drops them afterwards. Skipped, saying so,
//! when no PostgreSQL answers at ROLEGATE_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres).

use rolegate_connectors::config::parse;
use rolegate_connectors::connector::{ApplyContext, Connector, Grant};
use rolegate_connectors::kind::KindConfig;
use rolegate_connectors::kind::postgresql::{PostgresqlConnector, quote_ident};
use tokio_postgres::{Client, NoTls};

fn admin_url() -> String {
    std::env::var("ROLEGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> Option<Client> {
    match tokio_postgres::connect(&admin_url(), NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            eprintln!(
                "SKIPPED the postgresql connector tests: no PostgreSQL at {} ({e})",
                admin_url()
            );
            None
        }
    }
}

/// The roles of one run, dropped at the end.
struct Roles {
    prefix: String,
}

impl Roles {
    fn name(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    async fn drop_all(&self, admin: &Client) {
        let rows = admin
            .query(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)",
                &[&self.prefix],
            )
            .await
            .unwrap_or_else(|e| panic!("roles of the run: {e}"));
        for r in rows {
            let name: String = r.get(0);
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&name)))
                .await;
        }
    }
}

async fn members(admin: &Client, target: &str) -> Vec<String> {
    let mut out: Vec<String> = admin
        .query(
            "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1",
            &[&target],
        )
        .await
        .unwrap_or_else(|e| panic!("members of {target}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.sort();
    out
}

fn connector(url: &str, ignore: &[&str]) -> PostgresqlConnector {
    let text = format!(
        "[connectors.pg]\nkind = \"postgresql\"\nurl = \"{url}\"\nignore_members = {ignore:?}\n\
         [[connectors.pg.rules]]\nrole = \"Reader\"\n\
         scope = \"/subscriptions/3f2504e0-4f89-11d3-9a0c-0305e82c3301\"\ntarget = \"x\"\n"
    );
    let config = parse("t.toml", &text, &[("UNUSED", "")]).unwrap_or_else(|p| panic!("{p:#?}"));
    let c = &config.connectors[0];
    let KindConfig::Postgresql(pg) = &c.kind else {
        panic!("{:?}", c.kind)
    };
    PostgresqlConnector::new(&c.name, pg, &c.ignore_members, c.timeout, c.concurrency)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ctx() -> ApplyContext {
    ApplyContext::default()
}

fn grant(target: &str, principal: &str) -> Grant {
    Grant {
        target: target.into(),
        principal: principal.into(),
    }
}

#[tokio::test]
async fn grants_revokes_and_lists_managed_roles_only() {
    let Some(admin) = admin().await else { return };
    let roles = Roles {
        prefix: format!("rgt{}", std::process::id()),
    };
    roles.drop_all(&admin).await;
    let (target, other, superuser) = (
        roles.name("app_admin"),
        roles.name("unmanaged"),
        roles.name("su"),
    );
    let (alice, nologin, provisioner) = (
        roles.name("alice"),
        roles.name("nologin"),
        roles.name("prov"),
    );
    let odd = format!("{}_We\"ird Name", roles.prefix);
    let oncall = roles.name("dba_oncall");
    let setup = format!(
        "CREATE ROLE {t} NOLOGIN; CREATE ROLE {o} NOLOGIN; CREATE ROLE {su} SUPERUSER NOLOGIN;
         CREATE ROLE {a} LOGIN; CREATE ROLE {n} NOLOGIN; CREATE ROLE {w} LOGIN; CREATE ROLE {d} LOGIN;
         CREATE ROLE {p} LOGIN NOINHERIT;
         GRANT {t} TO {p} WITH ADMIN OPTION; GRANT {o} TO {a}; GRANT {t} TO {d}",
        t = quote_ident(&target),
        o = quote_ident(&other),
        su = quote_ident(&superuser),
        a = quote_ident(&alice),
        n = quote_ident(&nologin),
        w = quote_ident(&odd),
        d = quote_ident(&oncall),
        p = quote_ident(&provisioner),
    );
    admin.batch_execute(&setup).await.unwrap();
    let database = admin_url()
        .rsplit('/')
        .next()
        .unwrap_or("postgres")
        .to_string();
    let url = format!("postgresql://{provisioner}@127.0.0.1:5432/{database}");
    let c = connector(&url, &[&oncall]);

    // Granted, visible in pg_auth_members; applying again changes nothing.
    c.apply(&grant(&target, &alice), &ctx()).await.unwrap();
    c.apply(&grant(&target, &alice), &ctx()).await.unwrap();
    c.apply(&grant(&target, &odd), &ctx()).await.unwrap();
    let mut expected = vec![
        alice.clone(),
        oncall.clone(),
        odd.clone(),
        provisioner.clone(),
    ];
    expected.sort();
    assert_eq!(members(&admin, &target).await, expected);

    // The actual state: managed targets only, without the connector's own account or
    // ignore_members; alice's unmanaged membership is not even read.
    let listed = c.list(std::slice::from_ref(&target)).await.unwrap();
    let mut want = vec![grant(&target, &alice), grant(&target, &odd)];
    want.sort();
    assert_eq!(listed, want);

    // Refusals that name the cause, and change nothing.
    let refused = |code: &'static str| {
        move |e: rolegate_connectors::connector::ConnectorError| {
            assert_eq!(e.code, code, "{e}");
            assert!(!e.unreachable);
        }
    };
    c.apply(&grant(&superuser, &alice), &ctx())
        .await
        .map_err(refused("TargetIsSuperuser"))
        .unwrap_err();
    c.apply(&grant(&roles.name("absent"), &alice), &ctx())
        .await
        .map_err(refused("TargetNotFound"))
        .unwrap_err();
    c.apply(&grant(&target, &roles.name("nobody")), &ctx())
        .await
        .map_err(refused("PrincipalNotFound"))
        .unwrap_err();
    c.apply(&grant(&target, &nologin), &ctx())
        .await
        .map_err(refused("PrincipalCannotLogin"))
        .unwrap_err();
    assert_eq!(members(&admin, &target).await, expected);

    // Revoked, idempotently; an unknown principal is an absent grant.
    c.revoke(&grant(&target, &alice), &ctx()).await.unwrap();
    c.revoke(&grant(&target, &alice), &ctx()).await.unwrap();
    c.revoke(&grant(&target, &roles.name("nobody")), &ctx())
        .await
        .unwrap();
    c.revoke(&grant(&target, &odd), &ctx()).await.unwrap();
    let mut left = vec![oncall.clone(), provisioner.clone()];
    left.sort();
    assert_eq!(members(&admin, &target).await, left);
    assert_eq!(
        members(&admin, &other).await,
        vec![alice.clone()],
        "the unmanaged role is untouched"
    );
    assert!(
        c.list(std::slice::from_ref(&target))
            .await
            .unwrap()
            .is_empty()
    );

    roles.drop_all(&admin).await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_down() {
    // Port 9 (discard) on loopback: nothing listens.
    let c = connector("postgresql://nobody@127.0.0.1:9/postgres", &[]);
    let e = c.apply(&grant("t", "p"), &ctx()).await.unwrap_err();
    assert!(e.unreachable, "{e}");
    assert_eq!(e.code, "Unreachable");
    let e = c.list(&["t".to_string()]).await.unwrap_err();
    assert!(e.unreachable, "never an empty answer: {e}");
}

/// The server's certificate file when it serves TLS with one this test can read (Debian
/// makes a self-signed `localhost` certificate); `None` otherwise.
async fn server_certificate(admin: &Client) -> Option<String> {
    let on: String = admin.query_one("SHOW ssl", &[]).await.ok()?.get(0);
    let file: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .ok()?
        .get(0);
    (on == "on" && file.starts_with('/') && std::fs::read(&file).is_ok()).then_some(file)
}

#[tokio::test]
async fn tls_is_verified_as_sslmode_says() {
    let Some(admin) = admin().await else { return };
    let Some(cert) = server_certificate(&admin).await else {
        eprintln!(
            "SKIPPED tls_is_verified_as_sslmode_says: the PostgreSQL server has no readable TLS certificate"
        );
        return;
    };
    let roles = Roles {
        prefix: format!("rgtls{}", std::process::id()),
    };
    roles.drop_all(&admin).await;
    let (target, alice, provisioner) = (
        roles.name("app_admin"),
        roles.name("alice"),
        roles.name("prov"),
    );
    admin
        .batch_execute(&format!(
            "CREATE ROLE {target} NOLOGIN; CREATE ROLE {alice} LOGIN; \
             CREATE ROLE {provisioner} LOGIN NOINHERIT; GRANT {target} TO {provisioner} WITH ADMIN OPTION"
        ))
        .await
        .unwrap();
    let port = admin_url()
        .rsplit_once(':')
        .and_then(|(_, p)| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(5432);
    let url = |host: &str, params: &str| {
        format!("postgresql://{provisioner}@{host}:{port}/postgres?{params}")
    };
    // verify-full: the chain to the server's own certificate and the name `localhost`.
    let c = connector(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        ),
        &[],
    );
    // The connector's own account is a member too (WITH ADMIN OPTION).
    let granted = async || members(&admin, &target).await.contains(&alice);
    c.apply(&grant(&target, &alice), &ctx()).await.unwrap();
    assert!(granted().await);
    // The connection it keeps is encrypted.
    let encrypted: Vec<bool> = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.usename = $1",
            &[&provisioner],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !encrypted.is_empty() && encrypted.iter().all(|e| *e),
        "{encrypted:?}"
    );
    // The same certificate does not name 127.0.0.1: verify-full refuses, verify-ca (the
    // chain only) accepts.
    let c = connector(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        ),
        &[],
    );
    let e = c.revoke(&grant(&target, &alice), &ctx()).await.unwrap_err();
    assert!(e.unreachable, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    let c = connector(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={cert}"),
        ),
        &[],
    );
    c.revoke(&grant(&target, &alice), &ctx()).await.unwrap();
    assert!(!granted().await);
    // Another CA: refused.
    let other_ca = format!(
        "{}/../rolegate/tests/it/tls/ca.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let c = connector(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other_ca}"),
        ),
        &[],
    );
    let e = c.apply(&grant(&target, &alice), &ctx()).await.unwrap_err();
    assert!(e.unreachable, "{e}");
    assert!(!granted().await);
    roles.drop_all(&admin).await;
}
