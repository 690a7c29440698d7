//! SMS through Aliyun (阿里云短信 `SendSms`): templates are approved by the vendor in advance, so
//! alert fields are mapped onto the template's parameters. The request is an RPC call signed
//! with signature version 1.0: parameters sorted, percent-encoded by RFC 3986,
//! `StringToSign = METHOD + "&%2F&" + encode(canonical query)`, and
//! `Signature = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// RFC 3986 percent-encoding: unreserved characters stay, everything else is %XX of its UTF-8.
pub(super) fn pop_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical query and its signature for `params` (without `Signature`).
pub(super) fn aliyun_sign(
    method: &str,
    params: &BTreeMap<String, String>,
    secret: &str,
) -> (String, String) {
    let canonical = params
        .iter()
        .map(|(k, v)| format!("{}={}", pop_encode(k), pop_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}&%2F&{}", pop_encode(&canonical));
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    let sig = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    (canonical, sig)
}

/// The form parameters of one `SendSms` call, signed.
#[allow(clippy::too_many_arguments)]
pub(super) fn aliyun_request(
    access_key_id: &str,
    secret: &str,
    sign_name: &str,
    template_code: &str,
    phones: &[String],
    template_params: &BTreeMap<String, String>,
    n: &tocsin_alerting::Payload,
    timestamp: &str,
    nonce: &str,
) -> String {
    let tp: serde_json::Map<String, Value> = template_params
        .iter()
        .map(|(param, f)| (param.clone(), Value::String(super::field(n, f))))
        .collect();
    let mut p = BTreeMap::new();
    for (k, v) in [
        ("AccessKeyId", access_key_id.to_string()),
        ("Action", "SendSms".into()),
        ("Format", "JSON".into()),
        ("PhoneNumbers", phones.join(",")),
        ("RegionId", "cn-hangzhou".into()),
        ("SignName", sign_name.into()),
        ("SignatureMethod", "HMAC-SHA1".into()),
        ("SignatureNonce", nonce.into()),
        ("SignatureVersion", "1.0".into()),
        ("TemplateCode", template_code.into()),
        ("TemplateParam", Value::Object(tp).to_string()),
        ("Timestamp", timestamp.into()),
        ("Version", "2017-05-25".into()),
    ] {
        p.insert(k.to_string(), v);
    }
    let (canonical, sig) = aliyun_sign("POST", &p, secret);
    format!("Signature={}&{canonical}", pop_encode(&sig))
}

/// Aliyun answers `{"Code": "OK", …}` on success.
pub(super) fn aliyun_check(body: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(body).map_err(|_| {
        format!(
            "unexpected reply: {}",
            body.chars().take(200).collect::<String>()
        )
    })?;
    match v["Code"].as_str() {
        Some("OK") => Ok(()),
        Some(c) => Err(format!("{c}: {}", v["Message"].as_str().unwrap_or(""))),
        None => Err("reply without Code".into()),
    }
}

pub(super) struct AliyunSms {
    pub(super) client: reqwest::Client,
    pub(super) cfg: tocsin_config::collector::AliyunSmsConfig,
}

impl super::Channel for AliyunSms {
    fn send<'a>(
        &'a self,
        _raw: &'a str,
        n: &'a tocsin_alerting::Payload,
        _id: i64,
    ) -> super::Sending<'a> {
        Box::pin(async move {
            let (client, cfg) = (&self.client, &self.cfg);
            let now = tocsin_model::now_ms();
            let timestamp = tocsin_alerting::format_rfc3339(now);
            // Aliyun wants seconds precision: 2017-07-12T02:42:19Z.
            let timestamp = format!("{}Z", &timestamp[..19]);
            let nonce = format!("{:016x}{:016x}", fastrand::u64(..), now);
            let body = aliyun_request(
                &cfg.access_key_id,
                cfg.access_key_secret.expose(),
                &cfg.sign_name,
                &cfg.template_code,
                &cfg.phone_numbers,
                &cfg.template_params,
                n,
                &timestamp,
                &nonce,
            );
            let resp = client
                .post(&cfg.endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(super::http::transport_error)?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() && !text.contains("\"Code\"") {
                return Err(super::DeliveryError::Status {
                    status,
                    body: super::http::short(&text),
                });
            }
            aliyun_check(&text).map_err(super::DeliveryError::Refused)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Aliyun's signature documentation: testId / testSecret, GET.
    #[test]
    fn published_example_vector() {
        let mut p = BTreeMap::new();
        for (k, v) in [
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        let (_, sig) = aliyun_sign("GET", &p, "testSecret");
        assert_eq!(sig, "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
    }

    #[test]
    fn encoding_and_replies() {
        assert_eq!(pop_encode("a b*c~+/"), "a%20b%2Ac~%2B%2F");
        assert!(aliyun_check(r#"{"Code":"OK","Message":"OK"}"#).is_ok());
        assert_eq!(
            aliyun_check(r#"{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"limit"}"#).unwrap_err(),
            "isv.BUSINESS_LIMIT_CONTROL: limit"
        );
    }
}
