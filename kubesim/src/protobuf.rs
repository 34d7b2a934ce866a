//! Kubernetes protobuf request bodies, decoded to JSON.
//!
//! kubectl's typed clients (e.g. `kubectl create job --from=cronjob/...`) send
//! `application/vnd.kubernetes.protobuf`. The message schemas are the Kubernetes `generated.proto`
//! file descriptors (Apache-2.0, extracted from client-go) in `src/proto/`, read at first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::error::ApiError;

static FILES: &[&[u8]] = &[
    include_bytes!("proto/meta_v1.pb"),
    include_bytes!("proto/runtime.pb"),
    include_bytes!("proto/intstr.pb"),
    include_bytes!("proto/resource.pb"),
    include_bytes!("proto/core_v1.pb"),
    include_bytes!("proto/apps_v1.pb"),
    include_bytes!("proto/batch_v1.pb"),
    include_bytes!("proto/autoscaling_v1.pb"),
    include_bytes!("proto/autoscaling_v2.pb"),
    include_bytes!("proto/events_v1.pb"),
];

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug)]
struct Field {
    name: String,
    number: u64,
    repeated: bool,
    ty: u64,
    type_name: String,
}

#[derive(Debug, Default)]
struct Message {
    fields: Vec<Field>,
    map_entry: bool,
}

type Schema = HashMap<String, Message>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {what}"))
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        self.take(n)
    }

    fn key(&mut self) -> Result<(u64, u64), ApiError> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => Err(bad("unsupported wire type")),
        }
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_message(schema: &mut Schema, prefix: &str, buf: &[u8]) -> Result<(), ApiError> {
    let mut r = Reader::new(buf);
    let mut name = String::new();
    let mut msg = Message::default();
    let mut nested = Vec::new();
    while !r.done() {
        let (num, wire) = r.key()?;
        match (num, wire) {
            (1, 2) => name = utf8(r.bytes()?),
            (2, 2) => {
                let mut fr = Reader::new(r.bytes()?);
                let mut f = Field {
                    name: String::new(),
                    number: 0,
                    repeated: false,
                    ty: 0,
                    type_name: String::new(),
                };
                while !fr.done() {
                    let (n, w) = fr.key()?;
                    match (n, w) {
                        (1, 2) => f.name = utf8(fr.bytes()?),
                        (3, 0) => f.number = fr.varint()?,
                        (4, 0) => f.repeated = fr.varint()? == 3,
                        (5, 0) => f.ty = fr.varint()?,
                        (6, 2) => f.type_name = utf8(fr.bytes()?),
                        _ => fr.skip(w)?,
                    }
                }
                msg.fields.push(f);
            }
            (3, 2) => nested.push(r.bytes()?),
            (7, 2) => {
                let mut or = Reader::new(r.bytes()?);
                while !or.done() {
                    let (n, w) = or.key()?;
                    if (n, w) == (7, 0) {
                        msg.map_entry = or.varint()? != 0;
                    } else {
                        or.skip(w)?;
                    }
                }
            }
            _ => r.skip(wire)?,
        }
    }
    let full = format!("{prefix}.{name}");
    for n in nested {
        parse_message(schema, &full, n)?;
    }
    schema.insert(full, msg);
    Ok(())
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = Schema::new();
        for file in FILES {
            let mut r = Reader::new(file);
            let mut package = String::new();
            let mut messages = Vec::new();
            while !r.done() {
                let Ok((num, wire)) = r.key() else { break };
                let ok = match (num, wire) {
                    (2, 2) => r.bytes().map(|b| package = utf8(b)),
                    (4, 2) => r.bytes().map(|b| messages.push(b)),
                    _ => r.skip(wire),
                };
                if ok.is_err() {
                    break;
                }
            }
            for m in messages {
                let _ = parse_message(&mut schema, &format!(".{package}"), m);
            }
        }
        schema
    })
}

fn base64(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const META: &str = ".k8s.io.apimachinery.pkg.apis.meta.v1";

/// Decode one message of type `ty` (a full name like `.k8s.io.api.batch.v1.Job`).
fn decode(ty: &str, buf: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > 64 {
        return Err(bad("nesting too deep"));
    }
    let schema = schema();
    let msg = schema
        .get(ty)
        .ok_or_else(|| bad(&format!("unknown message type {ty}")))?;
    let mut obj = Map::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (num, wire) = r.key()?;
        let Some(f) = msg.fields.iter().find(|f| f.number == num) else {
            r.skip(wire)?;
            continue;
        };
        let mut values = Vec::new();
        match (f.ty, wire) {
            (11, 2) => values.push(decode(&f.type_name, r.bytes()?, depth + 1)?),
            (9, 2) => values.push(Value::String(utf8(r.bytes()?))),
            (12, 2) => values.push(Value::String(base64(r.bytes()?))),
            (_, 2) => {
                let mut pr = Reader::new(r.bytes()?);
                while !pr.done() {
                    values.push(scalar(f.ty, pr.varint()?));
                }
            }
            (_, 0) => values.push(scalar(f.ty, r.varint()?)),
            (1, 1) => values.push(json!(f64::from_le_bytes(
                r.take(8)?.try_into().map_err(|_| bad("double"))?
            ))),
            (2, 5) => values.push(json!(f32::from_le_bytes(
                r.take(4)?.try_into().map_err(|_| bad("float"))?
            ))),
            _ => r.skip(wire)?,
        }
        let is_map = f.ty == 11 && schema.get(&f.type_name).is_some_and(|m| m.map_entry);
        for v in values {
            if is_map {
                let key = match &v["key"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let entry = obj.entry(f.name.clone()).or_insert_with(|| json!({}));
                entry[key] = v
                    .get("value")
                    .cloned()
                    .unwrap_or(Value::String(String::new()));
            } else if f.repeated {
                let entry = obj.entry(f.name.clone()).or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(v);
                }
            } else {
                obj.insert(f.name.clone(), v);
            }
        }
    }
    Ok(special(ty, Value::Object(obj)))
}

fn scalar(ty: u64, v: u64) -> Value {
    match ty {
        8 => json!(v != 0),
        5 | 14 => json!(v as i64 as i32),
        13 => json!(v as u32),
        4 => json!(v),
        17 => json!(((v >> 1) as i64 ^ -((v & 1) as i64)) as i32),
        18 => json!((v >> 1) as i64 ^ -((v & 1) as i64)),
        _ => json!(v as i64),
    }
}

/// Types with a custom JSON form.
fn special(ty: &str, v: Value) -> Value {
    match ty.strip_prefix(META) {
        Some(".Time") | Some(".MicroTime") => {
            let secs = v["seconds"].as_i64().unwrap_or(0);
            let nanos = v["nanos"].as_i64().unwrap_or(0);
            if secs == 0 && nanos == 0 {
                return Value::Null;
            }
            match jiff::Timestamp::new(secs, nanos as i32) {
                Ok(t) if ty.ends_with("MicroTime") => {
                    json!(t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
                }
                Ok(t) => json!(crate::clock::fmt_time(t)),
                Err(_) => Value::Null,
            }
        }
        Some(".Duration") => json!(format!(
            "{}s",
            v["duration"].as_i64().unwrap_or(0) / 1_000_000_000
        )),
        // managedFields are not kept.
        Some(".FieldsV1") => Value::Null,
        _ => match ty {
            ".k8s.io.apimachinery.pkg.api.resource.Quantity" => {
                v.get("string").cloned().unwrap_or(Value::Null)
            }
            ".k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
                if v["type"].as_i64().unwrap_or(0) == 1 {
                    v.get("strVal").cloned().unwrap_or(json!(""))
                } else {
                    v.get("intVal").cloned().unwrap_or(json!(0))
                }
            }
            ".k8s.io.apimachinery.pkg.runtime.RawExtension" => Value::Null,
            _ => v,
        },
    }
}

/// Drop what Go's JSON encoding would omit: empty strings, nulls, and objects left empty by that.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(prune);
            m.retain(|_, x| !(x.is_null() || x.as_str() == Some("")));
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

/// Whether a Content-Type is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .trim_start()
        .starts_with("application/vnd.kubernetes.protobuf")
}

/// Decode a `k8s\0` + runtime.Unknown envelope into the JSON object it carries.
pub fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s magic"))?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while !r.done() {
        let (num, wire) = r.key()?;
        match (num, wire) {
            (1, 2) => {
                let mut tr = Reader::new(r.bytes()?);
                while !tr.done() {
                    let (n, w) = tr.key()?;
                    match (n, w) {
                        (1, 2) => api_version = utf8(tr.bytes()?),
                        (2, 2) => kind = utf8(tr.bytes()?),
                        _ => tr.skip(w)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            _ => r.skip(wire)?,
        }
    }
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or(("core", &api_version));
    let ty = if group == "meta.k8s.io" {
        format!("{META}.{kind}")
    } else {
        format!(
            ".k8s.io.api.{}.{version}.{kind}",
            group.trim_end_matches(".k8s.io").replace('.', "_")
        )
    };
    let ty = if kind == "DeleteOptions" {
        format!("{META}.DeleteOptions")
    } else {
        ty
    };
    let mut v = decode(&ty, raw, 0)?;
    prune(&mut v);
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_knows_the_served_kinds() {
        for ty in [
            ".k8s.io.api.batch.v1.Job",
            ".k8s.io.api.apps.v1.Deployment",
            ".k8s.io.api.core.v1.Pod",
            ".k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        ] {
            assert!(schema().contains_key(ty), "{ty}");
        }
        assert!(schema()[".k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta.LabelsEntry"].map_entry);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_object(b"nope").is_err());
        assert!(decode_object(b"k8s\0\x0a\xff\xff\xff").is_err());
        assert!(decode_object(b"k8s\0\x12\x05\x0a\x03abc").is_err());
    }

    /// Random bodies inside well-formed envelopes (so every served kind's schema is walked)
    /// decode or fail, never panic.
    #[test]
    fn random_bodies_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kinds = [
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("v1", "Pod"),
            ("v1", "Event"),
            ("batch/v1", "CronJob"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("meta.k8s.io/v1", "DeleteOptions"),
        ];
        let field = |tag: u8, b: &[u8]| -> Vec<u8> {
            let mut out = vec![tag];
            let mut n = b.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(b);
            out
        };
        let mut decoded = 0;
        for i in 0..20_000 {
            let (api_version, kind) = kinds[i % kinds.len()];
            let len = (next() % 200) as usize;
            // Mostly small field numbers and valid wire types, so the decoder goes deep.
            let raw: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        ((((r >> 8) % 16) << 3) | ((r >> 16) % 3)) as u8
                    } else {
                        (r >> 24) as u8
                    }
                })
                .collect();
            let mut type_meta = field(0x0a, api_version.as_bytes());
            type_meta.extend(field(0x12, kind.as_bytes()));
            let mut body = MAGIC.to_vec();
            body.extend(field(0x0a, &type_meta));
            body.extend(field(0x12, &raw));
            if decode_object(&body).is_ok() {
                decoded += 1;
            }
        }
        assert!(decoded > 0, "some random bodies are valid messages");
    }
}
