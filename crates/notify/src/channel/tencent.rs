//! Tencent Cloud SMS (`SendSms`, API 2021-01-11) signed with TC3-HMAC-SHA256: the headers to
//! send (besides Content-Type) and the JSON body.

use serde_json::{json, Value};

pub(super) const CONTENT_TYPE: &str = "application/json; charset=utf-8";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, msg.as_bytes()).as_ref().to_vec()
}

/// The `Authorization` header for `payload` sent to `host` at `timestamp` (Unix seconds).
pub(super) fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    payload: &str,
    timestamp: i64,
) -> String {
    let date = {
        let days = timestamp.div_euclid(86_400);
        // Civil date from days since the epoch (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let canonical = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\n\ncontent-type;host\n{}",
        sha256_hex(payload.as_bytes())
    );
    let scope = format!("{date}/sms/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), &date);
    let k_service = hmac(&k_date, "sms");
    let k_signing = hmac(&k_service, "tc3_request");
    let signature = hex(&hmac(&k_signing, &to_sign));
    format!("TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}")
}

pub(super) fn body(
    app_id: &str,
    sign_name: &str,
    template_id: &str,
    phones: &[String],
    params: &[String],
) -> Value {
    json!({
        "PhoneNumberSet": phones,
        "SmsSdkAppId": app_id,
        "SignName": sign_name,
        "TemplateId": template_id,
        "TemplateParamSet": params,
    })
}

/// Tencent answers `{"Response": {"SendStatusSet": [{"Code": "Ok"}…]}}`, or an `Error`.
pub(super) fn check(body: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(body).map_err(|_| {
        format!(
            "unexpected reply: {}",
            body.chars().take(200).collect::<String>()
        )
    })?;
    let r = &v["Response"];
    if let Some(e) = r.get("Error") {
        return Err(format!(
            "{}: {}",
            e["Code"].as_str().unwrap_or(""),
            e["Message"].as_str().unwrap_or("")
        ));
    }
    let set = r["SendStatusSet"]
        .as_array()
        .ok_or("reply without SendStatusSet")?;
    match set.iter().find(|s| s["Code"] != "Ok") {
        Some(s) => Err(format!(
            "{}: {}",
            s["Code"].as_str().unwrap_or(""),
            s["Message"].as_str().unwrap_or("")
        )),
        None => Ok(()),
    }
}

pub(super) struct TencentSms {
    pub(super) client: reqwest::Client,
    pub(super) cfg: tocsin_config::collector::TencentSmsConfig,
}

impl super::Channel for TencentSms {
    fn send<'a>(
        &'a self,
        _raw: &'a str,
        n: &'a tocsin_alerting::Payload,
        _id: i64,
    ) -> super::Sending<'a> {
        Box::pin(async move {
            let (client, cfg) = (&self.client, &self.cfg);
            let params: Vec<String> = cfg
                .template_params
                .iter()
                .map(|f| super::field(n, f))
                .collect();
            let body = body(
                &cfg.app_id,
                &cfg.sign_name,
                &cfg.template_id,
                &cfg.phone_numbers,
                &params,
            )
            .to_string();
            let url = reqwest::Url::parse(&cfg.endpoint)
                .map_err(|e| super::DeliveryError::Message(format!("endpoint: {e}")))?;
            let host = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return Err(super::DeliveryError::Message("endpoint has no host".into())),
            };
            let ts = tocsin_model::now_ms() / 1000;
            let auth = authorization(&cfg.secret_id, cfg.secret_key.expose(), &host, &body, ts);
            let resp = client
                .post(url)
                .header("Authorization", auth)
                .header("Content-Type", CONTENT_TYPE)
                .header("Host", host)
                .header("X-TC-Action", "SendSms")
                .header("X-TC-Timestamp", ts.to_string())
                .header("X-TC-Version", "2021-01-11")
                .header("X-TC-Region", &cfg.region)
                .body(body)
                .send()
                .await
                .map_err(super::http::transport_error)?;
            let text = resp.text().await.unwrap_or_default();
            check(&text).map_err(super::DeliveryError::Refused)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_shape_and_date() {
        let a = authorization(
            "AKIDtest",
            "key",
            "sms.tencentcloudapi.com",
            "{}",
            1_551_113_065,
        );
        assert!(a.starts_with("TC3-HMAC-SHA256 Credential=AKIDtest/2019-02-25/sms/tc3_request, SignedHeaders=content-type;host, Signature="), "{a}");
        assert_eq!(a.rsplit('=').next().unwrap().len(), 64);
    }

    #[test]
    fn replies() {
        assert!(check(r#"{"Response":{"SendStatusSet":[{"Code":"Ok","Message":"send success"}],"RequestId":"x"}}"#).is_ok());
        assert!(check(r#"{"Response":{"SendStatusSet":[{"Code":"LimitExceeded.PhoneNumberDailyLimit","Message":"limit"}]}}"#).is_err());
        assert_eq!(
            check(
                r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad"}}}"#
            )
            .unwrap_err(),
            "AuthFailure.SignatureFailure: bad"
        );
    }
}
