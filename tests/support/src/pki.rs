//! Certificates for the TLS tests, made fresh by each test: a CA, a server certificate for
//! `localhost` and 127.0.0.1 signed by it, and client certificates with a chosen Common Name.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};

/// PEM files in a folder.
pub struct Pki {
    pub dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A CA (`ca.pem`) and a server certificate (`server.pem`, `server.key`) in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = name("ringmq test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        std::fs::write(dir.join("ca.pem"), issuer.as_ref().pem()).expect("ca.pem");
        let pki = Pki {
            dir: dir.to_path_buf(),
            issuer,
        };
        pki.issue(
            "server",
            &["localhost".to_string(), "127.0.0.1".to_string()],
            "localhost",
        );
        pki
    }

    /// A client certificate with Common Name `cn`: `<file>.pem`, `<file>.key`.
    pub fn client(&self, file: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(file, &[], cn)
    }

    fn issue(&self, file: &str, names: &[String], cn: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(names.to_vec()).expect("params");
        params.distinguished_name = name(cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let (cert_path, key_path) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("key");
        (cert_path, key_path)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}
