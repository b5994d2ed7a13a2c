//! A throwaway OpenLDAP `slapd` for tests, shared by the ldap kind's tests
//! (`crates/connectors/tests/ldap.rs`) and the end-to-end ones through `serve`
//! (`crates/rolegate/tests/it/provisioning.rs`, which include this file by path): a
//! directory `dc=example,dc=net` whose service account may write the `member` attribute of
//! the managed group only, on free loopback ports (plain LDAP and LDAPS).

// Each including test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SLAPD: &str = "/usr/sbin/slapd";
pub const SLAPADD: &str = "/usr/sbin/slapadd";
pub const ADMIN: &str = "cn=admin,dc=example,dc=net";
pub const ADMIN_PW: &str = "admin-Secret-1";
pub const SERVICE: &str = "cn=rolegate,ou=services,dc=example,dc=net";
pub const SERVICE_PW: &str = "rolegate-Secret-2";
pub const MANAGED: &str = "cn=prod-admins,ou=groups,dc=example,dc=net";
pub const UNMANAGED: &str = "cn=others,ou=groups,dc=example,dc=net";
pub const PLACEHOLDER: &str = "cn=placeholder,dc=example,dc=net";
pub const TEMPLATE: &str = "uid={value},ou=people,dc=example,dc=net";

/// The test CA and `localhost` certificate committed for the e-mail tests (their key was
/// never kept, nothing trusts them outside the tests).
pub fn tls_file(name: &str) -> String {
    format!(
        "{}/../rolegate/tests/it/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A slapd of this test, stopped and removed on drop: plain LDAP on `port`, LDAPS on
/// `tls_port`, both on loopback, with a certificate for `localhost`.
pub struct Slapd {
    child: Child,
    dir: PathBuf,
    /// `ldap://127.0.0.1:PORT`.
    pub url: String,
    /// The plain LDAP port.
    pub port: u16,
    /// The LDAPS port.
    pub tls_port: u16,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running slapd, or `None` (having said so) without Debian's `slapd`.
pub fn slapd() -> Option<Slapd> {
    if !Path::new(SLAPD).exists() {
        eprintln!(
            "SKIPPED the ldap connector tests: no {SLAPD} (apt-get install slapd ldap-utils)"
        );
        return None;
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rolegate-slapd-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap_or_else(|e| panic!("{e}"));
    let conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {dir}/slapd.pid\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         database mdb\n\
         maxsize 10485760\n\
         suffix \"dc=example,dc=net\"\n\
         rootdn \"{ADMIN}\"\n\
         rootpw {ADMIN_PW}\n\
         directory {dir}/data\n\
         TLSCACertificateFile {ca}\n\
         TLSCertificateFile {cert}\n\
         TLSCertificateKeyFile {key}\n\
         access to dn.exact=\"{MANAGED}\" attrs=member by dn.exact=\"{SERVICE}\" write by * break\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by * read\n",
        dir = dir.display(),
        ca = tls_file("ca.pem"),
        cert = tls_file("relay.pem"),
        key = tls_file("relay.key"),
    );
    std::fs::write(dir.join("slapd.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
    let ldif = format!(
        "dn: dc=example,dc=net\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,dc=example,dc=net\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,dc=example,dc=net\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,dc=example,dc=net\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: rolegate\nuserPassword: {SERVICE_PW}\n\n\
         dn: {MANAGED}\nobjectClass: groupOfNames\ncn: prod-admins\nmember: {PLACEHOLDER}\n\n\
         dn: {UNMANAGED}\nobjectClass: groupOfNames\ncn: others\nmember: {PLACEHOLDER}\n"
    );
    std::fs::write(dir.join("base.ldif"), ldif).unwrap_or_else(|e| panic!("{e}"));
    let loaded = Command::new(SLAPADD)
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-l")
        .arg(dir.join("base.ldif"))
        .output()
        .unwrap_or_else(|e| panic!("slapadd: {e}"));
    assert!(
        loaded.status.success(),
        "slapadd: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (port, tls_port) = (free_port(), free_port());
    let url = format!("ldap://127.0.0.1:{port}");
    let child = Command::new(SLAPD)
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-h")
        .arg(format!("{url}/ ldaps://127.0.0.1:{tls_port}/"))
        .args(["-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("slapd: {e}"));
    let server = Slapd {
        child,
        dir,
        url,
        port,
        tls_port,
    };
    let up = (0..100).any(|_| {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(up, "slapd did not start on {}", server.url);
    Some(server)
}
