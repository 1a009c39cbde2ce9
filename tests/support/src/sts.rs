//! The STS stand-in: canned AssumeRole (and GetCallerIdentity) XML, counting calls, checking
//! that the caller signed with Account B's base credentials and enforcing the ExternalId.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::accounts::{
    ASSUMED_ACCESS_KEY, ASSUMED_SECRET, ASSUMED_TOKEN, BASE_ACCESS_KEY, EXTERNAL_ID,
};
use crate::serve::serve_plain;

/// How the STS stand-in behaves; change it while the test runs.
pub struct StsBehaviour {
    /// Lifetime of issued credentials.
    pub lifetime: Duration,
    /// Refuse every AssumeRole with AccessDenied (trust policy missing).
    pub deny: bool,
    /// ExternalId the "trust policy" requires.
    pub external_id: Option<String>,
    /// Answer every call with 503 ServiceUnavailable (an STS outage).
    pub outage: bool,
    /// Per-role ExternalIds, overriding `external_id` for those roles.
    pub role_external_ids: Vec<(String, String)>,
    /// Roles whose AssumeRole is refused with AccessDenied.
    pub denied_roles: Vec<String>,
}

/// (RoleArn, ExternalId) of one AssumeRole call.
pub type Assumed = (String, Option<String>);

pub struct StsStandIn {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub behaviour: Arc<Mutex<StsBehaviour>>,
    /// Session names seen, in order.
    pub session_names: Arc<Mutex<Vec<String>>>,
    /// (RoleArn, ExternalId) of every AssumeRole, in order.
    pub assumed: Arc<Mutex<Vec<Assumed>>>,
}

impl StsStandIn {
    pub async fn start() -> Self {
        let behaviour = Arc::new(Mutex::new(StsBehaviour {
            lifetime: Duration::from_secs(3600),
            deny: false,
            external_id: Some(EXTERNAL_ID.to_string()),
            outage: false,
            role_external_ids: Vec::new(),
            denied_roles: Vec::new(),
        }));
        let calls = Arc::new(AtomicUsize::new(0));
        let session_names = Arc::new(Mutex::new(Vec::new()));
        let assumed = Arc::new(Mutex::new(Vec::new()));
        let (b, c, s, a) = (
            behaviour.clone(),
            calls.clone(),
            session_names.clone(),
            assumed.clone(),
        );
        let addr = serve_plain(move |req| {
            let (b, c, s, a) = (b.clone(), c.clone(), s.clone(), a.clone());
            async move { sts_handle(req, &b, &c, &s, &a).await }
        })
        .await;
        Self {
            addr,
            calls,
            behaviour,
            session_names,
            assumed,
        }
    }

    /// Every (RoleArn, ExternalId) asked for so far.
    pub fn assumed(&self) -> Vec<Assumed> {
        self.assumed.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_deny(&self, deny: bool) {
        self.behaviour.lock().unwrap().deny = deny;
    }

    pub fn set_outage(&self, outage: bool) {
        self.behaviour.lock().unwrap().outage = outage;
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.behaviour.lock().unwrap().lifetime = lifetime;
    }
}

async fn sts_handle(
    req: Request<Incoming>,
    behaviour: &Mutex<StsBehaviour>,
    calls: &AtomicUsize,
    session_names: &Mutex<Vec<String>>,
    assumed: &Mutex<Vec<Assumed>>,
) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("Action").as_deref() == Some("GetCallerIdentity") {
        let arn = if auth.contains(&format!("Credential={BASE_ACCESS_KEY}/")) {
            "arn:aws:iam::222222222222:user/account_b"
        } else if auth.contains(&format!("Credential={ASSUMED_ACCESS_KEY}/")) {
            "arn:aws:sts::111111111111:assumed-role/account_a_role/session"
        } else {
            return sts_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid",
            );
        };
        let account = arn.split(':').nth(4).unwrap();
        return xml_response(
            200,
            format!(
                r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AIDEXAMPLE</UserId><Account>{account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#
            ),
        );
    }
    if get("Action").as_deref() != Some("AssumeRole") {
        return sts_error(
            400,
            "InvalidAction",
            "only AssumeRole and GetCallerIdentity are implemented",
        );
    }
    calls.fetch_add(1, Ordering::SeqCst);
    if let Some(name) = get("RoleSessionName") {
        session_names.lock().unwrap().push(name);
    }
    let role = get("RoleArn").unwrap_or_default();
    assumed
        .lock()
        .unwrap()
        .push((role.clone(), get("ExternalId")));
    // The caller must sign with Account B's base credentials.
    if !auth.contains(&format!("Credential={BASE_ACCESS_KEY}/")) {
        return sts_error(
            403,
            "InvalidClientTokenId",
            "request not signed with the base credentials",
        );
    }
    let (lifetime, deny, want_ext, outage) = {
        let b = behaviour.lock().unwrap();
        let ext = b
            .role_external_ids
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, e)| e.clone())
            .or_else(|| b.external_id.clone());
        (
            b.lifetime,
            b.deny || b.denied_roles.contains(&role),
            ext,
            b.outage,
        )
    };
    if outage {
        return sts_error(503, "ServiceUnavailable", "Service is unavailable");
    }
    if deny {
        return sts_error(
            403,
            "AccessDenied",
            "User: arn:aws:iam::222222222222:user/account_b is not authorized to perform: sts:AssumeRole",
        );
    }
    if want_ext.is_some() && get("ExternalId") != want_ext {
        return sts_error(
            403,
            "AccessDenied",
            "ExternalId does not match the trust policy condition",
        );
    }
    let expiration = humantime::format_rfc3339_seconds(SystemTime::now() + lifetime);
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:s3-access-example</AssumedRoleId>
      <Arn>arn:aws:sts::111111111111:assumed-role/account_a_role/session</Arn>
    </AssumedRoleUser>
    <Credentials>
      <SecretAccessKey>{ASSUMED_SECRET}</SecretAccessKey>
      <SessionToken>{ASSUMED_TOKEN}</SessionToken>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{ASSUMED_ACCESS_KEY}</AccessKeyId>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#
    );
    xml_response(200, xml)
}

fn sts_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_response(
        status,
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#
        ),
    )
}

fn xml_response(status: u16, xml: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .unwrap()
}
