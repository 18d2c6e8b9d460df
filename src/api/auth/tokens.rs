//! `static` mode: a file of SHA-256 token hashes, each with an identity and its rights (`read`, `scale`,
//! `write`), reloaded when the file changes. Rights belong to the token: two tokens of one identity keep
//! their own.
//!
//! The file holds hashes only (`printf %s "$TOKEN" | sha256sum`), so reading it discloses no token. A file that
//! becomes invalid while running is logged and the previous table kept; it must never fail open.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::hash_eq;
use crate::provider::Access;

/// How often the file's modification time is looked at, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid tokens file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    identity: String,
    /// Hex SHA-256 of the token.
    sha256: String,
    rights: Vec<Right>,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Right {
    Read,
    Scale,
    Write,
}

/// What one token may do: `read` the GET routes, `scale` controllers (POST), `write` everything else
/// (scaling included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub read: bool,
    pub scale: bool,
    pub write: bool,
}

impl Rights {
    pub fn allow(&self, access: &Access) -> bool {
        if !access.is_write() {
            self.read
        } else if access.resource == "controllers" && access.subresource == "scale" {
            self.scale || self.write
        } else {
            self.write
        }
    }
}

struct Token {
    hash: [u8; 32],
    identity: String,
    rights: Rights,
}

struct Loaded {
    tokens: Arc<Vec<Token>>,
    modified: Option<SystemTime>,
}

/// The token table and the file it comes from.
pub struct StaticTokens {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    last_check: Mutex<Instant>,
}

impl StaticTokens {
    pub fn load(path: PathBuf) -> Result<StaticTokens, TokenFileError> {
        let (tokens, modified) = read(&path)?;
        Ok(StaticTokens {
            path,
            loaded: RwLock::new(Loaded { tokens: Arc::new(tokens), modified }),
            last_check: Mutex::new(Instant::now()),
        })
    }

    fn tokens(&self) -> Arc<Vec<Token>> {
        self.reload_if_changed();
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).tokens.clone()
    }

    fn reload_if_changed(&self) {
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let current = self.loaded.read().unwrap_or_else(|e| e.into_inner()).modified;
        if modified == current {
            return;
        }
        match read(&self.path) {
            Ok((tokens, modified)) => {
                tracing::info!(path = %self.path.display(), tokens = tokens.len(), "reloaded the tokens file");
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) =
                    Loaded { tokens: Arc::new(tokens), modified };
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the previous tokens");
                self.loaded.write().unwrap_or_else(|e| e.into_inner()).modified = modified;
            }
        }
    }

    /// The identity and rights of the token with this hash. Every entry is compared, in constant time, so
    /// that timing tells nothing about which hash matched how far.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<(String, Rights)> {
        let tokens = self.tokens();
        let mut found = None;
        for token in tokens.iter() {
            if hash_eq(&token.hash, hash) && found.is_none() {
                found = Some((token.identity.clone(), token.rights));
            }
        }
        found
    }
}

fn read(path: &PathBuf) -> Result<(Vec<Token>, Option<SystemTime>), TokenFileError> {
    let invalid = |message: String| TokenFileError::Invalid { path: path.clone(), message };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|source| TokenFileError::Read { path: path.clone(), source })?;
    let file: File = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut tokens = Vec::with_capacity(file.tokens.len());
    for (i, entry) in file.tokens.into_iter().enumerate() {
        let hash = parse_hex(&entry.sha256)
            .ok_or_else(|| invalid(format!("tokens[{i}].sha256 is not 64 hex digits")))?;
        if entry.identity.is_empty() {
            return Err(invalid(format!("tokens[{i}].identity is empty")));
        }
        let has = |right| entry.rights.contains(&right);
        let rights = Rights { read: has(Right::Read), scale: has(Right::Scale), write: has(Right::Write) };
        tokens.push(Token { hash, identity: entry.identity, rights });
    }
    Ok((tokens, modified))
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::token_hash;
    use super::*;

    fn access(verb: &'static str, resource: &'static str, subresource: &'static str) -> Access {
        Access {
            verb,
            group: "machinist.dev",
            resource,
            subresource,
            namespace: "ns".into(),
            name: String::new(),
        }
    }

    fn hex(hash: [u8; 32]) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn tokens_are_matched_by_hash_with_their_rights_and_reloaded_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let write_file = |entries: &str| std::fs::write(&path, format!("tokens:\n{entries}")).unwrap();
        write_file(&format!(
            "- {{identity: reader, sha256: {}, rights: [read]}}\n",
            hex(token_hash("r-token"))
        ));
        let tokens = StaticTokens::load(path.clone()).unwrap();
        let (identity, rights) = tokens.lookup(&token_hash("r-token")).expect("known");
        assert_eq!(identity, "reader");
        assert_eq!(tokens.lookup(&token_hash("other")), None);
        assert!(rights.allow(&access("list", "machines", "")));
        assert!(!rights.allow(&access("delete", "controllers", "")));

        // A later modification time than the loaded one: reloaded once the check interval has passed.
        write_file(&format!(
            "- {{identity: writer, sha256: {}, rights: [read, write]}}\n",
            hex(token_hash("w-token"))
        ));
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        *tokens.last_check.lock().unwrap() = Instant::now() - RELOAD_CHECK;
        assert_eq!(tokens.lookup(&token_hash("w-token")).map(|t| t.0).as_deref(), Some("writer"));
        assert_eq!(tokens.lookup(&token_hash("r-token")), None, "removed tokens stop working");

        // An invalid file keeps the previous table.
        std::fs::write(&path, "tokens: [{identity: x, sha256: nothex, rights: [read]}]").unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        *tokens.last_check.lock().unwrap() = Instant::now() - RELOAD_CHECK;
        assert_eq!(tokens.lookup(&token_hash("w-token")).map(|t| t.0).as_deref(), Some("writer"));
    }

    #[test]
    fn scale_is_its_own_right_and_write_implies_it() {
        let scale = access("update", "controllers", "scale");
        let apply = access("update", "controllers", "");
        let scaler = Rights { read: true, scale: true, write: false };
        assert!(
            scaler.allow(&scale)
                && !scaler.allow(&apply)
                && !scaler.allow(&access("delete", "controllers", ""))
        );
        let writer = Rights { read: false, scale: false, write: true };
        assert!(
            writer.allow(&scale) && writer.allow(&apply) && !writer.allow(&access("get", "machines", ""))
        );
    }

    #[test]
    fn invalid_files_fail_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "tokens: [{identity: a, sha256: abc, rights: [read]}]").unwrap();
        let error = StaticTokens::load(path).err().expect("invalid").to_string();
        assert!(error.contains("64 hex digits"), "{error}");
        assert!(StaticTokens::load(dir.path().join("missing")).is_err());
    }
}
