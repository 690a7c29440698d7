//! SMS through Aliyun (阿里云短信 `SendSms`): templates are approved by the vendor in advance, so
//! alert fields are mapped onto the template's parameters. The request is an RPC call signed
//! with signature version 1.0: parameters sorted, percent-encoded by RFC 3986,
//! `StringToSign = METHOD + "&%2F&" + encode(canonical query)`, and
//! `Signature = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// RFC 3986 percent-encoding: unreserved characters stay, everything else is %XX of its UTF-8.
pub fn pop_encode(s: &str) -> String {
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
pub fn aliyun_sign(
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

/// Alert fields a template parameter can take: alertname, host, level, status, value, summary,
/// threshold.
pub fn field(n: &Value, name: &str) -> String {
    let a = &n["alerts"][0];
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match name {
        "alertname" => s(&a["labels"]["alertname"]),
        "host" => s(&a["labels"]["host"]),
        "level" => s(&n["tocsin"]["level"]),
        "status" => s(&n["status"]),
        "value" => s(&n["tocsin"]["value"]),
        "summary" => s(&a["annotations"]["summary"]),
        "threshold" => s(&n["tocsin"]["threshold"]),
        other => s(&a["labels"][other]),
    }
}

/// The form parameters of one `SendSms` call, signed.
#[allow(clippy::too_many_arguments)]
pub fn aliyun_request(
    access_key_id: &str,
    secret: &str,
    sign_name: &str,
    template_code: &str,
    phones: &[String],
    template_params: &BTreeMap<String, String>,
    n: &Value,
    timestamp: &str,
    nonce: &str,
) -> String {
    let tp: serde_json::Map<String, Value> = template_params
        .iter()
        .map(|(param, f)| (param.clone(), Value::String(field(n, f))))
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
pub fn aliyun_check(body: &str) -> Result<(), String> {
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

/// Tencent Cloud SMS (`SendSms`, API 2021-01-11) signed with TC3-HMAC-SHA256: the headers to
/// send (besides Content-Type) and the JSON body.
pub mod tencent {
    use serde_json::{json, Value};

    pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

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
    pub fn authorization(
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

    pub fn body(
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
    pub fn check(body: &str) -> Result<(), String> {
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
            assert_eq!(check(r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad"}}}"#).unwrap_err(), "AuthFailure.SignatureFailure: bad");
        }
    }
}
