//! The `rfc2136` provider: TSIG-signed dynamic updates (RFC 2136, RFC 8945)
//! adding or deleting one TXT record at the zone's primary.
//!
//! Owns: the TSIG key (read once, from a file only its owner can read),
//! building the UPDATE messages, judging the primary's reply (TSIG error,
//! signature, rcode). Must not: find the zone (mod.rs does) or retry.
//! Fed by: zone apex + record. Emits: Ok or an error naming who refused.
//!
//! ```text
//!   UPDATE  zone: <apex> SOA
//!           update: add    <fqdn> <ttl> IN   TXT "<value>"     (2.5.1)
//!               or  delete <fqdn> 0     NONE TXT "<value>"     (2.5.4)
//!           additional: TSIG <key> (signed with the secret)
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use super::wire::{self, Reply, Transport, rcode_name};
use super::{DnsError, plain};
use crate::config::acme_dns::ProviderSettings;

/// Clock difference the primary tolerates (RFC 8945 section 10: 300 s).
const FUDGE: u16 = 300;

/// Add or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Delete,
}

/// One primary and the key it knows us by.
pub struct Rfc2136 {
    server: SocketAddr,
    signer: TSigner,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("key", &self.signer.signer_name().to_ascii())
            .finish()
    }
}

impl Rfc2136 {
    /// Reads the key file; `settings` passed `validate()`.
    pub fn new(settings: &ProviderSettings) -> Result<Rfc2136, DnsError> {
        let missing = |what: &str| DnsError::Settings(format!("rfc2136 needs {what}"));
        let server = settings.server.ok_or_else(|| missing("server"))?;
        let key_name = settings
            .tsig_key_name
            .as_deref()
            .ok_or_else(|| missing("tsig_key_name"))?;
        let path = settings
            .tsig_key_file
            .as_deref()
            .ok_or_else(|| missing("tsig_key_file"))?;
        let secret = read_key_file(path)?;
        let algorithm = algorithm(settings.tsig_algorithm())?;
        let name = fqdn(key_name)
            .map_err(|e| DnsError::Settings(format!("tsig_key_name `{key_name}`: {e}")))?;
        let signer = TSigner::new(secret, algorithm, name, FUDGE)
            .map_err(|e| DnsError::Settings(format!("TSIG key {key_name}: {e}")))?;
        Ok(Rfc2136 { server, signer })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Send one signed update and judge the reply.
    pub async fn update(
        &self,
        change: Change,
        zone: &Name,
        fqdn: &Name,
        value: &str,
        ttl: u32,
    ) -> Result<(), DnsError> {
        let mut message = update_message(change, zone, fqdn, value, ttl)?;
        let mut verifier = message
            .finalize(&self.signer, unix_now())
            .map_err(|e| DnsError::Internal(format!("TSIG signing: {e}")))?
            .ok_or_else(|| DnsError::Internal("TSIG signing gave no verifier".into()))?;
        let reply = wire::exchange(
            self.server,
            &message,
            Transport::Tcp,
            wire::EXCHANGE_TIMEOUT,
        )
        .await?;
        let verified = verifier.verify(&reply.bytes).map(|_| ());
        judge(
            self.server,
            zone,
            &reply,
            verified.map_err(|e| e.to_string()),
        )
    }
}

/// The UPDATE for `change` of `fqdn TXT value` in `zone` (RFC 2136
/// section 2.5.1 add, 2.5.4 delete an RR).
pub fn update_message(
    change: Change,
    zone: &Name,
    fqdn: &Name,
    value: &str,
    ttl: u32,
) -> Result<Message, DnsError> {
    if !zone.zone_of(fqdn) {
        return Err(DnsError::Internal(format!(
            "{} is not in zone {}",
            plain(fqdn),
            plain(zone)
        )));
    }
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut zone_q = Query::query(zone.clone(), RecordType::SOA);
    zone_q.set_query_class(DNSClass::IN);
    message.add_zone(zone_q);
    let mut record = Record::from_rdata(
        fqdn.clone(),
        ttl,
        RData::TXT(TXT::new(vec![value.to_string()])),
    );
    if change == Change::Delete {
        record.dns_class = DNSClass::NONE;
        record.ttl = 0;
    }
    message.add_update(record);
    Ok(message)
}

/// The primary's verdict. `verified` is the TSIG check of the reply.
pub fn judge(
    server: SocketAddr,
    zone: &Name,
    reply: &Reply,
    verified: Result<(), String>,
) -> Result<(), DnsError> {
    // BADKEY/BADSIG replies are unsigned, BADTIME ones signed; all carry
    // the TSIG error (RFC 8945 section 5.2).
    if let Some(error) = reply.message.signature().and_then(|s| s.data.error) {
        return Err(DnsError::TsigRefused {
            server,
            error: tsig_error_name(u16::from(error)),
        });
    }
    if let ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME =
        reply.message.response_code
    {
        return Err(DnsError::TsigRefused {
            server,
            error: tsig_error_name(u16::from(reply.message.response_code)),
        });
    }
    let rcode = reply.message.response_code;
    if rcode == ResponseCode::NotAuth && reply.message.signature().is_none() {
        // A server that has no such key at all may answer NOTAUTH unsigned.
        return Err(DnsError::TsigRefused {
            server,
            error: "NOTAUTH (unsigned reply: key unknown there?)".into(),
        });
    }
    // A reply we cannot authenticate could be anybody's.
    if let Err(reason) = verified {
        return Err(DnsError::TsigUnverified { server, reason });
    }
    if rcode != ResponseCode::NoError {
        return Err(DnsError::UpdateRefused {
            server,
            zone: plain(zone),
            rcode: rcode_name(rcode),
        });
    }
    Ok(())
}

fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        other => format!("TSIG error {other}"),
    }
}

fn algorithm(name: &str) -> Result<TsigAlgorithm, DnsError> {
    match name {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(DnsError::Settings(format!(
            "TSIG algorithm `{other}` is not supported"
        ))),
    }
}

/// `name` as an absolute DNS name (a trailing dot is optional).
pub fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The secret in `path`: the owner-only file we opened, holding the base64
/// secret alone or a BIND `key { ... secret "..."; };` block.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, DnsError> {
    let key_err = |reason: String| DnsError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| key_err(e.to_string()))?;
    // Mode of the file we opened, not of whatever the path names now.
    let mode = file
        .metadata()
        .map_err(|e| key_err(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(key_err(format!(
            "readable by group/others (mode {:o}); run `chmod 600 {}`",
            mode & 0o777,
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| key_err(e.to_string()))?;
    parse_secret(&text).map_err(key_err)
}

/// The base64 secret of a key file's text.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = match text.find("secret") {
        Some(at) => {
            let rest = text.get(at + "secret".len()..).unwrap_or_default();
            let open = rest.find('"').ok_or("a `secret` without a quoted value")?;
            let rest = rest.get(open + 1..).unwrap_or_default();
            let close = rest.find('"').ok_or("an unterminated secret")?;
            rest.get(..close).unwrap_or_default()
        }
        None => text.trim(),
    };
    if b64.is_empty() {
        return Err("no secret in it".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("the secret is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};

    use super::*;

    fn name(s: &str) -> Name {
        fqdn(s).expect("name")
    }

    #[test]
    fn reads_bare_and_bind_style_secrets() {
        assert_eq!(parse_secret("c2VjcmV0\n").expect("bare"), b"secret");
        let bind = "key \"portier\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(parse_secret(bind).expect("bind"), b"secret");
        assert!(parse_secret("").is_err());
        assert!(parse_secret("not base64!").is_err());
        assert!(parse_secret("secret c2VjcmV0;").is_err());
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let path = std::env::temp_dir().join(format!("portier-tsig-{}", std::process::id()));
        std::fs::write(&path, "c2VjcmV0\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_key_file(&path).expect_err("0644");
        assert!(
            err.to_string().contains("readable by group/others"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_key_file(&path).expect("0600"), b"secret");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn builds_add_and_delete_by_rdata() {
        let zone = name("example.com");
        let fqdn = name("_acme-challenge.example.com");
        let add = update_message(Change::Add, &zone, &fqdn, "v4lue", 120).expect("add");
        assert_eq!(add.op_code, OpCode::Update);
        assert_eq!(add.queries.len(), 1);
        assert_eq!(add.queries[0].name(), &zone);
        assert_eq!(add.queries[0].query_type(), RecordType::SOA);
        // RFC 2136's update section travels as the authority section.
        let rec = &add.authorities[0];
        assert_eq!((rec.dns_class, rec.ttl), (DNSClass::IN, 120));
        assert_eq!(rec.data, RData::TXT(TXT::new(vec!["v4lue".into()])));

        let del = update_message(Change::Delete, &zone, &fqdn, "v4lue", 120).expect("del");
        let rec = &del.authorities[0];
        assert_eq!((rec.dns_class, rec.ttl), (DNSClass::NONE, 0));
        assert_eq!(rec.data, RData::TXT(TXT::new(vec!["v4lue".into()])));

        let outside = update_message(Change::Add, &zone, &name("x.example.net"), "v", 1);
        assert!(outside.is_err(), "a name outside the zone is refused");
    }

    fn reply_to(request: &Message, rcode: ResponseCode, tsig_error: Option<TsigError>) -> Reply {
        let mut m = Message::error_msg(request.id, OpCode::Update, rcode);
        m.add_queries(request.queries.clone());
        if let Some(e) = tsig_error {
            let tsig = TSIG::new(
                TsigAlgorithm::HmacSha256,
                0,
                300,
                Vec::new(),
                request.id,
                Some(e),
                Vec::new(),
            );
            m.set_signature(Box::new(make_tsig_record(name("portier"), tsig)));
        }
        let bytes = m.to_vec().expect("encode");
        Reply {
            message: Message::from_vec(&bytes).expect("decode"),
            bytes,
        }
    }

    #[test]
    fn judges_tsig_errors_rcodes_and_unsigned_replies() {
        let server: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
        let zone = name("example.com");
        let req = update_message(
            Change::Add,
            &zone,
            &name("_acme-challenge.example.com"),
            "v",
            1,
        )
        .expect("msg");
        let judged = |rcode, tsig, verified: Result<(), String>| {
            judge(server, &zone, &reply_to(&req, rcode, tsig), verified)
        };
        let err = judged(
            ResponseCode::NotAuth,
            Some(TsigError::BadKey),
            Err("x".into()),
        );
        assert_eq!(
            err.expect_err("badkey").to_string(),
            "TSIG refused by 127.0.0.1:5353: BADKEY"
        );
        let err = judged(
            ResponseCode::NotAuth,
            Some(TsigError::BadSig),
            Err("x".into()),
        );
        assert!(err.expect_err("badsig").to_string().ends_with("BADSIG"));
        let err = judged(ResponseCode::Refused, None, Ok(()));
        assert!(
            err.expect_err("refused")
                .to_string()
                .starts_with("update refused: REFUSED"),
        );
        let err = judged(ResponseCode::NoError, None, Err("no signature".into()));
        assert!(
            matches!(err, Err(DnsError::TsigUnverified { .. })),
            "{err:?}"
        );
        judged(ResponseCode::NoError, None, Ok(())).expect("signed NOERROR is success");
    }
}
