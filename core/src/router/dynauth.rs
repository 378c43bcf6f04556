//! Dynamic authentication: a WAMP procedure registered by a component decides who joins.
//!
//! Crossbar's `"type": "dynamic"` authentication (`crossbar/router/auth/pending.py`,
//! `ticket.py`, `anonymous.py`): the router calls the configured `authenticator`
//! procedure in `authenticator-realm` (default: the realm the client asks for) with
//! `(realm, authid, details)`, where `details` holds the transport (`type`, `peer`), the
//! pending `session` id, the `authmethod`, the client's `authextra` and, for `ticket`, the `ticket` the client sent.
//! The procedure answers with a role string or a principal dictionary `{role, realm,
//! authid, extra}`; an ERROR, a timeout ([`super::Limits::router_call_timeout_ms`]) or an
//! answer of another shape denies the session with ABORT and no session is created.
//!
//! An [`Authenticator`] returns [`Step::Dynamic`] with a [`DynamicRequest`]; the shard makes
//! the call through the dealer ([`Shard::router_call`]) and the session waits
//! (authenticating) until the outcome arrives; the outcome becomes a [`Step`] as if it had
//! come through [`Shard::handle_auth_result`].
//!
//! The configured authenticator (`auth::Configured`) answers dynamic `anonymous` and `tls`
//! at HELLO and dynamic `ticket` at AUTHENTICATE with such a request; the answer decides.
//! Dynamic `wampcra`, `cryptosign` and SCRAM ask at HELLO: the principal carries the
//! `secret` (with `salt`, `iterations`, `keylen` when salted), the `pubkey`, or the SCRAM
//! credential (`kdf`, `iterations`, `memory`, `salt`, `stored-key`, `server-key`, as
//! Autobahn's `derive_scram_credential` gives it), and the shard then
//! challenges the client with it ([`super::Authenticator::dynamic_challenge`]). The
//! principal's `extra` is the session's `authextra`. For `tls`, `details.transport` also
//! holds `client_cert` (`sha1` fingerprint, `subject.cn`).
//!
//! Every refusal (an error raised, a timeout, an answer of a bad shape, a role the realm
//! lacks) goes through the shard's failure throttle like a static refusal. What this
//! module does not do: verify anything itself (the methods' modules in `auth` do).

use crate::message::{Dict, Value};

use super::dealer::{CallPurpose, RouterCallOutcome};
use super::session::State;
use super::{AuthContext, AuthInfo, ConnId, Shard, Step, AUTHENTICATION_FAILED};

/// What the shard needs to call a dynamic authenticator for one session.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicRequest {
    /// The authentication method the principal is for (`ticket`, `anonymous`).
    pub method: String,
    /// The authenticator procedure.
    pub authenticator: String,
    /// The realm the procedure is registered in; `None`: the realm the client asks for.
    pub authenticator_realm: Option<String>,
    /// The authid passed to the procedure (and kept unless the principal names another).
    pub authid: Option<String>,
    /// The role given when the principal names none (Crossbar's `default-role`).
    pub default_role: Option<String>,
    /// Method-specific keys added to the procedure's `details` (e.g. `ticket`).
    pub details: Dict,
}

/// One dynamic method's configuration (`{"type": "dynamic", "authenticator": ...}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicConfig {
    /// The authenticator procedure.
    pub authenticator: String,
    /// `authenticator-realm`.
    pub authenticator_realm: Option<String>,
    /// `default-role`.
    pub default_role: Option<String>,
}

/// The request for `method` under configuration `c`, passing `authid`.
pub(super) fn request(method: &str, c: &DynamicConfig, authid: Option<String>) -> DynamicRequest {
    DynamicRequest {
        method: method.to_owned(),
        authenticator: c.authenticator.clone(),
        authenticator_realm: c.authenticator_realm.clone(),
        authid,
        default_role: c.default_role.clone(),
        details: Dict::new(),
    }
}

/// What the shard keeps about a running dynamic authentication (in the call's purpose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PendingAuth {
    pub(super) method: String,
    pub(super) authid: Option<String>,
    pub(super) default_role: Option<String>,
}

/// Why a principal returned by an authenticator is refused: one variant per rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PrincipalError {
    /// Neither a string nor a dictionary.
    WrongType,
    /// A key holds a value of the wrong type (named).
    BadField(&'static str),
    /// No authid from the client nor the principal.
    NoAuthid,
    /// No role from the principal nor `default-role`.
    NoRole,
    /// The realm named does not exist on this router.
    NoSuchRealm(String),
    /// The role is not a role of the realm.
    NoSuchRole(String),
}

impl PrincipalError {
    fn reason(&self) -> &'static str {
        match self {
            Self::WrongType | Self::BadField(_) => "wamp.error.authentication_failed",
            Self::NoAuthid => "wamp.error.no_such_principal",
            Self::NoRole | Self::NoSuchRole(_) => "wamp.error.no_such_role",
            Self::NoSuchRealm(_) => "wamp.error.no_such_realm",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::WrongType => "dynamic authenticator returned neither a role nor a dict".into(),
            Self::BadField(k) => format!("dynamic authenticator returned a bad `{k}`"),
            Self::NoAuthid => "no authid assigned".into(),
            Self::NoRole => "no authrole assigned".into(),
            Self::NoSuchRealm(r) => format!("no realm \"{r}\" exists on this router"),
            Self::NoSuchRole(r) => format!("the realm has no role \"{r}\""),
        }
    }
}

/// A principal as the authenticator returned it, with its realm resolved.
#[derive(Debug, PartialEq)]
struct Principal {
    realm: Option<String>,
    authid: String,
    authrole: String,
    extra: Option<Dict>,
}

/// Reads the authenticator's answer as Crossbar's `_assign_principal` does.
fn principal(
    answer: Option<&Value>,
    authid: Option<&str>,
    default_role: Option<&str>,
) -> Result<Principal, PrincipalError> {
    let str_field = |d: &Dict, k: &'static str| -> Result<Option<String>, PrincipalError> {
        match d.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(PrincipalError::BadField(k)),
        }
    };
    let (realm, id, role, extra) = match answer {
        Some(Value::Str(role)) => (None, None, Some(role.clone()), None),
        Some(Value::Dict(d)) => {
            let extra = match d.get("extra") {
                None | Some(Value::Null) => None,
                Some(Value::Dict(e)) => Some(e.clone()),
                Some(_) => return Err(PrincipalError::BadField("extra")),
            };
            (
                str_field(d, "realm")?,
                str_field(d, "authid")?,
                str_field(d, "role")?,
                extra,
            )
        }
        _ => return Err(PrincipalError::WrongType),
    };
    let authid = id
        .or_else(|| authid.map(str::to_owned))
        .filter(|a| !a.is_empty())
        .ok_or(PrincipalError::NoAuthid)?;
    let authrole = role
        .or_else(|| default_role.map(str::to_owned))
        .filter(|r| !r.is_empty())
        .ok_or(PrincipalError::NoRole)?;
    Ok(Principal {
        realm,
        authid,
        authrole,
        extra,
    })
}

impl Shard {
    /// Starts the call of a dynamic authenticator for the session authenticating on
    /// `conn`; refusals that need no call (unknown authenticator realm, no callee, too
    /// many router calls) abort at once.
    pub(super) fn dynamic_auth_start(&mut self, conn: ConnId, req: DynamicRequest) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let State::Authenticating { hello, session, .. } = &s.state else {
            return;
        };
        let call_realm_name = req
            .authenticator_realm
            .clone()
            .unwrap_or_else(|| hello.realm.clone());
        let Some(call_realm) = self
            .config
            .realms
            .iter()
            .position(|r| r.name == call_realm_name)
        else {
            self.auth_failed(
                conn,
                "wamp.error.no_such_realm".to_owned(),
                "the dynamic authenticator's realm does not exist".to_owned(),
            );
            return;
        };
        let authid = req.authid.clone().or_else(|| hello.details.authid.clone());
        let mut transport = Dict::new()
            .with("type", s.transport.kind.as_str())
            .with("peer", s.transport.peer.as_str());
        if let Some(sha1) = &s.transport.client_cert_sha1 {
            // Crossbar's `client_cert` shape, with what the io layer knows of it.
            let mut cert = Dict::new().with("sha1", super::auth::tls_fingerprint(sha1));
            if let Some(cn) = &s.transport.client_cert_cn {
                cert.insert("subject", Value::Dict(Dict::new().with("cn", cn.as_str())));
            }
            transport.insert("client_cert", Value::Dict(cert));
        }
        let mut details = Dict::new()
            .with("transport", transport)
            .with("authmethod", req.method.as_str())
            // The id the session will get if welcomed, as Crossbar's pending session id.
            .with("session", session.get());
        details.insert(
            "authextra",
            hello
                .details
                .authextra
                .clone()
                .map_or(Value::Null, Value::Dict),
        );
        for (k, v) in req.details.iter() {
            details.insert(k, v.clone());
        }
        let args = [
            Value::from(hello.realm.as_str()),
            authid.clone().map_or(Value::Null, Value::Str),
            Value::Dict(details),
        ];
        let purpose = CallPurpose::Authenticate {
            conn,
            auth: PendingAuth {
                method: req.method,
                authid,
                default_role: req.default_role,
            },
        };
        let timeout = self.config.limits.router_call_timeout_ms;
        // Realm count is bounded far below 2^16 by the configuration.
        let call_realm = u16::try_from(call_realm).unwrap_or(u16::MAX);
        if let Err(e) = self.router_call(
            call_realm,
            &req.authenticator,
            &args,
            None,
            timeout,
            purpose,
        ) {
            let message = if e == "wamp.error.no_such_procedure" {
                "the dynamic authenticator is not registered"
            } else {
                "too many dynamic authentications in flight"
            };
            self.auth_failed(conn, AUTHENTICATION_FAILED.to_owned(), message.to_owned());
        }
    }

    /// The dynamic authenticator answered (or failed, or timed out) for `conn`.
    pub(super) fn dynamic_auth_outcome(
        &mut self,
        conn: ConnId,
        auth: PendingAuth,
        outcome: RouterCallOutcome,
    ) {
        let authenticating = self
            .sessions
            .get(&conn)
            .is_some_and(|s| matches!(s.state, State::Authenticating { .. }));
        if !authenticating {
            // The client left (or was aborted) while the authenticator ran.
            return;
        }
        let args = match outcome {
            RouterCallOutcome::Result(args, _) => args,
            RouterCallOutcome::Error(error, message) => {
                // Crossbar passes the authenticator's error URI on for methods with a
                // credential, and reports `authentication_failed` for anonymous.
                let reason = if auth.method == "anonymous" {
                    "wamp.error.authentication_failed".to_owned()
                } else {
                    error
                };
                let message = message.unwrap_or_else(|| "dynamic authenticator failed".into());
                self.auth_failed(conn, reason, message);
                return;
            }
            RouterCallOutcome::Timeout => {
                self.auth_failed(
                    conn,
                    AUTHENTICATION_FAILED.to_owned(),
                    "dynamic authenticator timed out".to_owned(),
                );
                return;
            }
        };
        let p = match principal(
            args.first(),
            auth.authid.as_deref(),
            auth.default_role.as_deref(),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.auth_failed(conn, e.reason().to_owned(), e.message());
                return;
            }
        };
        if let Err(e) = self.assign_realm(conn, &p) {
            self.auth_failed(conn, e.reason().to_owned(), e.message());
            return;
        }
        let info = AuthInfo {
            authid: p.authid,
            authrole: p.authrole,
            authmethod: auth.method,
            authprovider: "dynamic".to_owned(),
            authextra: p.extra,
        };
        let step = match info.authmethod.as_str() {
            // The principal carries the secret or key the client must now prove.
            "wampcra" | "cryptosign" | "scram" | "wamp-scram" => {
                let principal = match args.first() {
                    Some(Value::Dict(d)) => d.clone(),
                    _ => Dict::new(),
                };
                self.dynamic_challenge(conn, info, &principal)
            }
            _ => Step::Welcome(info),
        };
        self.auth_step(conn, step);
    }

    /// Asks the authenticator for the CHALLENGE of a dynamic principal that must still
    /// prove itself.
    fn dynamic_challenge(&mut self, conn: ConnId, info: AuthInfo, principal: &Dict) -> Step {
        let Some(s) = self.sessions.get(&conn) else {
            return Step::Pending;
        };
        let State::Authenticating {
            realm,
            hello,
            session,
            ..
        } = &s.state
        else {
            return Step::Pending;
        };
        let ctx = AuthContext {
            realm: &self.config.realms[usize::from(*realm)].name,
            session: *session,
            counter: self.session_counter,
            transport: &s.transport,
            now: self.now,
        };
        self.authenticator
            .dynamic_challenge(&ctx, hello, info, principal)
    }

    /// Moves the authenticating session to the principal's realm (if it names one) and
    /// checks that the role exists there.
    fn assign_realm(&mut self, conn: ConnId, p: &Principal) -> Result<(), PrincipalError> {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let State::Authenticating { realm, hello, .. } = &mut s.state else {
            return Ok(());
        };
        if let Some(name) = &p.realm {
            let index = self
                .config
                .realms
                .iter()
                .position(|r| &r.name == name)
                .ok_or_else(|| PrincipalError::NoSuchRealm(name.clone()))?;
            *realm = u16::try_from(index).unwrap_or(u16::MAX);
            hello.realm.clone_from(name);
        }
        let has_role = self.config.realms[usize::from(*realm)]
            .roles
            .iter()
            .any(|r| r.name == p.authrole);
        if has_role {
            Ok(())
        } else {
            Err(PrincipalError::NoSuchRole(p.authrole.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(answer: Option<Value>, authid: Option<&str>, expect: Result<(&str, &str), &str>) {
        let got = principal(answer.as_ref(), authid, Some("fallback"));
        match expect {
            Ok((id, role)) => {
                let p = got.unwrap_or_else(|e| panic!("{e:?}"));
                assert_eq!((p.authid.as_str(), p.authrole.as_str()), (id, role));
            }
            Err(reason) => assert_eq!(got.map_err(|e| e.reason()), Err(reason)),
        }
    }

    #[test]
    fn principal_shapes_as_crossbar_reads_them() {
        check(Some(Value::from("user")), Some("joe"), Ok(("joe", "user")));
        let d = Dict::new().with("role", "admin").with("authid", "joseph");
        check(Some(Value::Dict(d)), Some("joe"), Ok(("joseph", "admin")));
        // No role: `default-role` applies.
        let d = Dict::new().with("authid", "x");
        check(Some(Value::Dict(d)), None, Ok(("x", "fallback")));
        check(
            Some(Value::Bool(true)),
            Some("joe"),
            Err("wamp.error.authentication_failed"),
        );
        check(None, Some("joe"), Err("wamp.error.authentication_failed"));
        check(
            Some(Value::from("user")),
            None,
            Err("wamp.error.no_such_principal"),
        );
        let d = Dict::new().with("role", 7_u64);
        check(
            Some(Value::Dict(d)),
            Some("joe"),
            Err("wamp.error.authentication_failed"),
        );
    }
}
