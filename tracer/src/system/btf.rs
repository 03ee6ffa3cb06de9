//! Reading the running kernel's BTF (`/sys/kernel/btf/vmlinux`): struct member offsets and
//! function signatures, so that programs reading kernel structs get offsets from the kernel
//! they run on, never from the machine that built them (Rust eBPF has no CO-RE relocations).

use std::collections::HashMap;
use std::path::Path;

use thiserror::Error;

/// Where the kernel exposes its own BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Problems reading BTF.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    /// The file could not be read.
    #[error("no BTF at {0}: {1}")]
    Read(String, String),
    /// The data is not BTF or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type kind this parser does not know (newer than it).
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
    /// The struct does not exist.
    #[error("struct {0} is not in this kernel's BTF")]
    NoStruct(String),
    /// The member does not exist in the struct.
    #[error("struct {0} has no member {1} on this kernel")]
    NoMember(String, String),
    /// The function does not exist.
    #[error("function {0} is not in this kernel's BTF")]
    NoFunction(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    members: Vec<Member>,
}

/// Parsed BTF: types by id, and string table.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<(u32, String), u32>,
}

/// A function's parameters, by name and type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Parameter names in order.
    pub params: Vec<String>,
    /// Each parameter's type, as C would name it (`struct sock *`, `int`...).
    pub types: Vec<String>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|e| BtfError::Read(path.display().to_string(), e.to_string()))?;
        Self::parse(&data)
    }

    /// Parses raw (little-endian) BTF.
    pub fn parse(b: &[u8]) -> Result<Self, BtfError> {
        if b.len() < 24 || b[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let types_bytes = b
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = b
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        // Type id 0 is `void`.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < types_bytes.len() {
            let name = u32_at(types_bytes, at)?;
            let info = u32_at(types_bytes, at + 4)?;
            let size_or_type = u32_at(types_bytes, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(types_bytes, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_bytes, m)?,
                            ty: u32_at(types_bytes, m + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM => 8 * vlen,
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let m = at + i * 8;
                        members.push(Member {
                            name: u32_at(types_bytes, m)?,
                            ty: u32_at(types_bytes, m + 4)?,
                            bit_offset: 0,
                        });
                    }
                    8 * vlen
                }
                KIND_DATASEC => 12 * vlen,
                KIND_ENUM64 => 12 * vlen,
                other => return Err(BtfError::UnknownKind(other)),
            };
            at += extra;
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.name != 0 && matches!(t.kind, KIND_STRUCT | KIND_UNION | KIND_FUNC) {
                let name = btf.string(t.name).to_string();
                btf.by_name.entry((t.kind, name)).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let start = off as usize;
        let rest = self.strings.get(start..).unwrap_or_default();
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous struct and union
    /// members (where `sock_common` keeps most of its fields).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        self.member_bit_offset(name, member).map(|bits| bits / 8)
    }

    /// Bit offset of `member` in `struct name` (a bit field need not start on a byte).
    pub fn member_bit_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .by_name
            .get(&(KIND_STRUCT, name.to_string()))
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        self.find_member(id, member, 0)
            .ok_or_else(|| BtfError::NoMember(name.to_string(), member.to_string()))
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            let bits = base_bits + m.bit_offset;
            if m.name != 0 && self.string(m.name) == member {
                return Some(bits);
            }
            if m.name == 0 {
                let inner = self.resolve(m.ty);
                if let Some(found) = self.find_member(inner, member, bits) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// The parameters of kernel function `name`.
    pub fn signature(&self, name: &str) -> Result<Signature, BtfError> {
        let id = *self
            .by_name
            .get(&(KIND_FUNC, name.to_string()))
            .ok_or_else(|| BtfError::NoFunction(name.to_string()))?;
        let proto = self
            .types
            .get(self.types[id as usize].size_or_type as usize)
            .ok_or(BtfError::Malformed("function without prototype"))?;
        Ok(Signature {
            params: proto
                .members
                .iter()
                .map(|m| self.string(m.name).to_string())
                .collect(),
            types: proto.members.iter().map(|m| self.type_name(m.ty)).collect(),
        })
    }

    /// A type as C would spell it, enough to tell signatures apart.
    fn type_name(&self, id: u32) -> String {
        let Some(t) = self.types.get(id as usize) else {
            return "?".into();
        };
        match t.kind {
            0 => "void".into(),
            KIND_PTR => format!("{} *", self.type_name(t.size_or_type)),
            KIND_STRUCT => format!("struct {}", self.string(t.name)),
            KIND_UNION => format!("union {}", self.string(t.name)),
            KIND_CONST => format!("const {}", self.type_name(t.size_or_type)),
            KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => self.type_name(t.size_or_type),
            _ => self.string(t.name).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: `struct outer { int a; union { int b; }; }` and a function.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0f\0sk\0".to_vec();
        // offsets: int=1 outer=5 a=11 b=13 f=15 sk=17
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        push(&[1, KIND_INT << 24, 4, 32]); // 1: int
        push(&[0, (KIND_UNION << 24) | 1, 4, 13, 1, 0]); // 2: union { int b; }
        push(&[5, (KIND_STRUCT << 24) | 2, 8, 11, 1, 0, 0, 2, 32]); // 3: struct outer
        push(&[0, KIND_PTR << 24, 3]); // 4: struct outer *
        push(&[0, (KIND_FUNC_PROTO << 24) | 1, 1, 17, 4]); // 5: int (struct outer *sk)
        push(&[15, KIND_FUNC << 24, 5]); // 6: f
        let mut b = Vec::new();
        b.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 4);
        assert_eq!(
            btf.member_offset("outer", "c"),
            Err(BtfError::NoMember("outer".into(), "c".into()))
        );
        assert!(matches!(
            btf.member_offset("nope", "a"),
            Err(BtfError::NoStruct(_))
        ));
        let sig = btf.signature("f").unwrap();
        assert_eq!(sig.params, ["sk"]);
        assert_eq!(sig.types, ["struct outer *"]);
        assert!(Btf::parse(b"not btf at all, no").is_err());
    }

    #[test]
    fn reads_the_running_kernel() {
        // Every kernel this tool supports has BTF; the CI kernel does.
        let btf = Btf::from_sys_fs().expect("BTF of the running kernel");
        let dport = btf.member_offset("sock_common", "skc_dport").unwrap();
        let num = btf.member_offset("sock_common", "skc_num").unwrap();
        assert_eq!(num, dport + 2, "skc_num follows skc_dport in the port pair");
        assert!(btf.member_offset("sock", "__sk_common").unwrap() == 0);
        let accept = btf.signature("inet_csk_accept").unwrap();
        assert_eq!(accept.types[0], "struct sock *");
        // 6.10 changed the signature; either form is recognised.
        assert!(
            accept.params.len() == 2 || accept.params.len() == 4,
            "{accept:?}"
        );
        for (st, member) in [
            ("sk_buff", "sk"),
            ("sk_buff", "head"),
            ("sk_buff", "network_header"),
            ("sk_buff", "dev"),
            ("net_device", "ifindex"),
            ("sock_common", "skc_state"),
        ] {
            let o = btf.member_offset(st, member);
            assert!(o.is_ok());
        }
    }
}
