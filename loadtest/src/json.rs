//! A tiny JSON object writer: the reports are flat, a serde dependency is not worth it.

pub struct Obj(String);

impl Default for Obj {
    fn default() -> Self {
        Obj::new()
    }
}

impl Obj {
    pub fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, k: &str) -> &mut Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0 += &string(k);
        self.0.push(':');
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Obj {
        self.key(k).0 += &string(v);
        self
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Obj {
        self.key(k).0 += &v.to_string();
        self
    }

    /// Non-finite numbers become `null`.
    pub fn num(&mut self, k: &str, v: f64) -> &mut Obj {
        let s = if v.is_finite() {
            format!("{v:.3}")
        } else {
            "null".into()
        };
        self.key(k).0 += &s;
        self
    }

    /// `v` must already be JSON.
    pub fn raw(&mut self, k: &str, v: &str) -> &mut Obj {
        self.key(k).0 += v;
        self
    }

    pub fn end(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push('}');
        s
    }
}

pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn object() {
        let o = Obj::new()
            .str("a", "x")
            .int("b", 2)
            .num("c", f64::NAN)
            .raw("d", "[]")
            .end();
        assert_eq!(o, r#"{"a":"x","b":2,"c":null,"d":[]}"#);
    }
}
