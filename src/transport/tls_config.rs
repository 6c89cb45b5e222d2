//! A TLS listener's rustls configuration, built from its PEM files and rebuilt on SIGHUP
//! (renewed certificates): connections already open keep the configuration they began with,
//! new ones get the new one. A reload that fails keeps the old configuration.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::listeners::{TlsFiles, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate check: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The configuration every shard starts its TLS connections with.
#[derive(Debug)]
pub struct TlsConfig {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsConfig {
    pub fn load(files: &TlsFiles) -> Result<TlsConfig, TlsConfigError> {
        Ok(TlsConfig {
            current: RwLock::new(build(files)?),
            files: files.clone(),
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rereads the files.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let new = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    pub fn use_identity_as_username(&self) -> bool {
        self.files.use_identity_as_username
    }
}

fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match files.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let roots = client_roots(files)?;
    let builder = match roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if files.require_certificate {
                verifier.build()?
            } else {
                verifier.allow_unauthenticated().build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = certificates(&files.certfile)?;
    let key = PrivateKeyDer::from_pem_file(&files.keyfile).map_err(|e| file(&files.keyfile, e))?;
    let mut config = builder.with_single_cert(certs, key)?;
    // MQTT over TLS has no ALPN of its own; browsers' wss asks for http/1.1.
    config.alpn_protocols = vec![b"mqtt".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CAs client certificates are checked against, if any are configured.
fn client_roots(files: &TlsFiles) -> Result<Option<RootCertStore>, TlsConfigError> {
    let mut paths = Vec::new();
    if let Some(cafile) = &files.cafile {
        paths.push(cafile.clone());
    }
    if let Some(capath) = &files.capath {
        let entries = std::fs::read_dir(capath).map_err(|e| file(capath, e))?;
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
            .collect();
        found.sort();
        paths.extend(found);
    }
    if paths.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for path in &paths {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|e| file(path, e))?;
        }
    }
    Ok(Some(roots))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(path, e))?;
    if certs.is_empty() {
        return Err(file(path, "no certificate in it"));
    }
    Ok(certs)
}

fn file(path: &Path, why: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}
