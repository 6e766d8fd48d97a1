//! Struct member offsets from the kernel's BTF, for the kernel-side walk of the
//! directory a relative path is resolved against.
//!
//! aya-ebpf cannot emit CO-RE relocations, so the eBPF program reads kernel
//! structs at offsets userspace found here and wrote into `Config::offsets`.
//! This is a small BTF reader for exactly that: named structs, their members
//! (through anonymous struct/union members, as in `struct qstr` or
//! `struct file`'s `f_path` union), and member byte offsets and sizes.

use std::{collections::HashMap, path::Path};

use exporter_common::{FilenameOffsets, IoUringOffsets, KernelOffsets, TaskOffsets, FIELD_ABSENT};

const BTF_MAGIC: u16 = 0xeb9f;

// Type kinds (include/uapi/linux/btf.h).
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

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("reading kernel BTF: {0}")]
    Io(String),
    #[error("not BTF: {0}")]
    Format(String),
    #[error("struct {0} is not in the kernel's BTF")]
    NoStruct(String),
    #[error("struct {0} has no member {1}")]
    NoMember(String, String),
    #[error("{0}.{1} is a bitfield")]
    Bitfield(String, String),
    #[error("{0}.{1} is {2} bytes, expected {3}")]
    Size(String, String, u32, u32),
}

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset; `bitfield` set when the member is a bitfield.
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Clone, Debug)]
struct Type {
    name_off: u32,
    kind: u32,
    /// `size` for INT/STRUCT/UNION/ENUM/FLOAT, else the referenced type id.
    size_or_type: u32,
    members: Vec<Member>,
    /// ARRAY: (element type, count).
    array: Option<(u32, u32)>,
}

/// The types of one BTF blob, enough to find struct members.
pub struct KernelBtf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<Vec<u8>, u32>,
}

/// Where a member lives: its byte offset in the outer struct and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub offset: u32,
    pub size: u32,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BtfError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| BtfError::Format(format!("truncated at byte {at}")))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Format(format!("truncated at byte {at}")))
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<KernelBtf, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<KernelBtf, BtfError> {
        let bytes = std::fs::read(path).map_err(|e| BtfError::Io(format!("{}: {e}", path.display())))?;
        Self::parse(&bytes)
    }

    /// Parses a little-endian BTF blob (vmlinux BTF on the hosts badfd runs on).
    pub fn parse(b: &[u8]) -> Result<KernelBtf, BtfError> {
        if u16_at(b, 0)? != BTF_MAGIC {
            return Err(BtfError::Format("bad magic (or a big-endian blob)".into()));
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let types_start = hdr_len.checked_add(type_off).ok_or_else(|| BtfError::Format("type offset".into()))?;
        let types_end = types_start.checked_add(type_len).ok_or_else(|| BtfError::Format("type length".into()))?;
        let str_start = hdr_len.checked_add(str_off).ok_or_else(|| BtfError::Format("string offset".into()))?;
        let str_end = str_start.checked_add(str_len).ok_or_else(|| BtfError::Format("string length".into()))?;
        let type_bytes = b.get(types_start..types_end).ok_or_else(|| BtfError::Format("type section out of range".into()))?;
        let strings = b.get(str_start..str_end).ok_or_else(|| BtfError::Format("string section out of range".into()))?.to_vec();

        // Type id 0 is `void`.
        let mut types = vec![Type { name_off: 0, kind: 0, size_or_type: 0, members: Vec::new(), array: None }];
        let mut at = 0usize;
        while at < type_bytes.len() {
            let name_off = u32_at(type_bytes, at)?;
            let info = u32_at(type_bytes, at + 4)?;
            let size_or_type = u32_at(type_bytes, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut t = Type { name_off, kind, size_or_type, members: Vec::new(), array: None };
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => {
                    t.array = Some((u32_at(type_bytes, at)?, u32_at(type_bytes, at + 8)?));
                    12
                }
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(type_bytes, m + 8)?;
                        let bitfield_size = if kind_flag { offset >> 24 } else { 0 };
                        t.members.push(Member {
                            name_off: u32_at(type_bytes, m)?,
                            type_id: u32_at(type_bytes, m + 4)?,
                            bit_offset: if kind_flag { offset & 0x00ff_ffff } else { offset },
                            bitfield: bitfield_size != 0,
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
                | KIND_FLOAT | KIND_TYPE_TAG => 0,
                other => return Err(BtfError::Format(format!("unknown type kind {other} at type {}", types.len()))),
            };
            at += extra;
            types.push(t);
        }
        if at != type_bytes.len() {
            return Err(BtfError::Format("type section ends inside a type".into()));
        }
        let mut btf = KernelBtf { types, strings, structs_by_name: HashMap::new() };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_vec();
                // The first full definition wins; vmlinux BTF has one per name.
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn get(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Follows typedefs and qualifiers to the type that has a layout.
    fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.get(id) {
                Some(t) if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) => {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Size in bytes of a type (pointers are 8 bytes: x86_64/arm64 kernels).
    fn size_of(&self, id: u32) -> u32 {
        let id = self.strip(id);
        match self.get(id) {
            Some(t) => match t.kind {
                KIND_PTR => 8,
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => t.size_or_type,
                KIND_ARRAY => t.array.map(|(elem, n)| self.size_of(elem).saturating_mul(n)).unwrap_or(0),
                _ => 0,
            },
            None => 0,
        }
    }

    /// Whether a member of this type id is a pointer.
    fn is_pointer(&self, id: u32) -> bool {
        self.get(self.strip(id)).is_some_and(|t| t.kind == KIND_PTR)
    }

    /// A member of a struct or union, searched also inside its anonymous
    /// struct/union members; returns (byte offset, member type id).
    fn find_in(&self, id: u32, member: &[u8], depth: u32) -> Option<(u32, u32, bool)> {
        if depth > 8 {
            return None;
        }
        let t = self.get(self.strip(id))?;
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == member {
                return Some((m.bit_offset / 8, m.type_id, m.bitfield));
            }
        }
        for m in &t.members {
            let inner = self.get(self.strip(m.type_id));
            if m.name_off == 0 && inner.is_some_and(|i| matches!(i.kind, KIND_STRUCT | KIND_UNION)) {
                if let Some((off, ty, bf)) = self.find_in(m.type_id, member, depth + 1) {
                    return Some((m.bit_offset / 8 + off, ty, bf));
                }
            }
        }
        None
    }

    /// Byte offset and size of `strukt.member`.
    pub fn member(&self, strukt: &str, member: &str) -> Result<MemberInfo, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let (offset, ty, bitfield) = self
            .find_in(id, member.as_bytes(), 0)
            .ok_or_else(|| BtfError::NoMember(strukt.into(), member.into()))?;
        if bitfield {
            return Err(BtfError::Bitfield(strukt.into(), member.into()));
        }
        Ok(MemberInfo { offset, size: self.size_of(ty) })
    }

    /// Size of a named struct.
    pub fn struct_size(&self, strukt: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        Ok(self.size_of(id))
    }

    /// `strukt.member` as a pointer member: its offset, checked to be 8 bytes.
    fn pointer(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let (offset, ty, _) = self
            .find_in(id, member.as_bytes(), 0)
            .ok_or_else(|| BtfError::NoMember(strukt.into(), member.into()))?;
        if !self.is_pointer(ty) {
            return Err(BtfError::Size(strukt.into(), member.into(), self.size_of(ty), 8));
        }
        Ok(offset)
    }

    /// `strukt.member` checked to be `size` bytes.
    fn sized(&self, strukt: &str, member: &str, size: u32) -> Result<u32, BtfError> {
        let m = self.member(strukt, member)?;
        if m.size != size {
            return Err(BtfError::Size(strukt.into(), member.into(), m.size, size));
        }
        Ok(m.offset)
    }

    /// Every offset the kernel's directory walk needs, checked for the sizes
    /// the eBPF program reads them with.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        let path_size = self.struct_size("path")?;
        if path_size != 16 {
            return Err(BtfError::Size("path".into(), "(size)".into(), path_size, 16));
        }
        Ok(KernelOffsets {
            valid: 1,
            task_fs: self.pointer("task_struct", "fs")?,
            task_files: self.pointer("task_struct", "files")?,
            fs_pwd: self.sized("fs_struct", "pwd", path_size)?,
            files_fdt: self.pointer("files_struct", "fdt")?,
            fdtable_max_fds: self.sized("fdtable", "max_fds", 4)?,
            fdtable_fd: self.pointer("fdtable", "fd")?,
            file_f_path: self.sized("file", "f_path", path_size)?,
            path_mnt: self.pointer("path", "mnt")?,
            path_dentry: self.pointer("path", "dentry")?,
            dentry_parent: self.pointer("dentry", "d_parent")?,
            dentry_name: self.sized("dentry", "d_name", self.struct_size("qstr")?)?,
            qstr_len: self.sized("qstr", "len", 4)?,
            qstr_name: self.pointer("qstr", "name")?,
            mount_parent: self.pointer("mount", "mnt_parent")?,
            mount_mountpoint: self.pointer("mount", "mnt_mountpoint")?,
            mount_mnt: self.sized("mount", "mnt", self.struct_size("vfsmount")?)?,
            vfsmount_root: self.pointer("vfsmount", "mnt_root")?,
            mount_ns: self.pointer("mount", "mnt_ns")?,
            _pad: 0,
            ..self.mnt_ns_offsets().unwrap_or(KernelOffsets::NONE)
        })
    }

    /// The offsets for reading the task's mount namespace number, alone (every
    /// other offset zero, `valid` 0): found independently of the directory walk's.
    pub fn mnt_ns_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            mnt_ns_valid: 1,
            task_nsproxy: self.pointer("task_struct", "nsproxy")?,
            nsproxy_mnt_ns: self.pointer("nsproxy", "mnt_ns")?,
            mnt_ns_inum: self.member("mnt_namespace", "ns")?.offset + self.sized("ns_common", "inum", 4)?,
            ..KernelOffsets::NONE
        })
    }
}

impl KernelBtf {
    /// The byte offset of `first.member` plus, for each further step, of
    /// that member's own member: `nested(&[("task_struct", "pending"),
    /// ("sigpending", "signal")])` is `task_struct.pending.signal`.
    fn nested(&self, steps: &[(&str, &str)]) -> Result<MemberInfo, BtfError> {
        let mut at = MemberInfo { offset: 0, size: 0 };
        for (strukt, member) in steps {
            let m = self.member(strukt, member)?;
            at = MemberInfo { offset: at.offset + m.offset, size: m.size };
        }
        Ok(at)
    }

    /// As `nested`, checked to be `size` bytes.
    fn nested_sized(&self, steps: &[(&str, &str)], size: u32) -> Result<u32, BtfError> {
        let m = self.nested(steps)?;
        if m.size != size {
            let (strukt, member) = steps.last().copied().unwrap_or(("?", "?"));
            return Err(BtfError::Size(strukt.into(), member.into(), m.size, size));
        }
        Ok(m.offset)
    }

    /// What the exit programs read of the task: the signal state that
    /// decides how an interrupted open ends, (x86) the 32-bit syscall flag,
    /// and where the effective uid is. Each part is valid on its own.
    pub fn task_offsets(&self) -> TaskOffsets {
        let signals = (|| -> Result<TaskOffsets, BtfError> {
            let sigset = 8;
            Ok(TaskOffsets {
                signals_valid: 1,
                task_pending_signal: self.nested_sized(&[("task_struct", "pending"), ("sigpending", "signal")], sigset)?,
                task_blocked: self.sized("task_struct", "blocked", sigset)?,
                task_signal: self.pointer("task_struct", "signal")?,
                signal_shared_pending: self
                    .nested_sized(&[("signal_struct", "shared_pending"), ("sigpending", "signal")], sigset)?,
                task_sighand: self.pointer("task_struct", "sighand")?,
                sighand_action: self.member("sighand_struct", "action")?.offset,
                k_sigaction_size: self.struct_size("k_sigaction")?,
                sa_handler: self.member("k_sigaction", "sa")?.offset + self.pointer("sigaction", "sa_handler")?,
                sa_flags: self.member("k_sigaction", "sa")?.offset + self.sized("sigaction", "sa_flags", 8)?,
                ..TaskOffsets::NONE
            })
        })()
        .unwrap_or(TaskOffsets::NONE);
        let parent = match (self.pointer("task_struct", "real_parent"), self.sized("task_struct", "tgid", 4)) {
            (Ok(task_real_parent), Ok(task_tgid)) => TaskOffsets { parent_valid: 1, task_real_parent, task_tgid, ..signals },
            _ => signals,
        };
        let task = match self.nested_sized(&[("task_struct", "thread_info"), ("thread_info", "status")], 4) {
            Ok(thread_status) => TaskOffsets { compat_valid: 1, thread_status, ..parent },
            Err(_) => parent,
        };
        // `kuid_t` is a struct of one u32.
        match (self.pointer("task_struct", "cred"), self.sized("cred", "euid", 4)) {
            (Ok(task_cred), Ok(cred_euid)) => TaskOffsets { cred_valid: 1, task_cred, cred_euid, ..task },
            _ => task,
        }
    }

    /// Where an io_uring open request keeps its arguments and its result
    /// (`records_valid` 0: the tracepoint records are tracefs's to say).
    pub fn io_uring_offsets(&self) -> Result<IoUringOffsets, BtfError> {
        // The request's command data: `cmd` since 6.0, the `open` member of
        // its union before.
        let req_open = self.member("io_kiocb", "cmd").or_else(|_| self.member("io_kiocb", "open"))?.offset;
        let req_result = self
            .nested_sized(&[("io_kiocb", "cqe"), ("io_cqe", "res")], 4)
            .or_else(|_| self.sized("io_kiocb", "result", 4))?;
        // A `struct filename *`, or (7.x) a one-pointer struct holding it.
        let filename = self.member("io_open", "filename")?;
        if filename.size != 8 {
            return Err(BtfError::Size("io_open".into(), "filename".into(), filename.size, 8));
        }
        Ok(IoUringOffsets {
            valid: 1,
            req_opcode: self.sized("io_kiocb", "opcode", 1)?,
            req_result,
            req_open,
            open_dfd: self.sized("io_open", "dfd", 4)?,
            open_filename: filename.offset,
            open_how: self.sized("io_open", "how", 24)?,
            ..IoUringOffsets::NONE
        })
    }

    /// Where `struct filename` keeps the kernel's copy of a path and (before
    /// 7.x) the user's pointer it was copied from.
    pub fn filename_offsets(&self) -> FilenameOffsets {
        match self.pointer("filename", "name") {
            Ok(name) => FilenameOffsets {
                valid: 1,
                name,
                uptr: self.pointer("filename", "uptr").unwrap_or(FIELD_ABSENT),
                _pad: 0,
            },
            Err(_) => FilenameOffsets::NONE,
        }
    }
}

/// Every set of offsets of the running kernel, read from its BTF once per
/// process: the kernel cannot change under a running process, and parsing
/// several MiB of BTF at every load is what made loads slow.
struct Running {
    kernel: Result<KernelOffsets, BtfError>,
    mnt_ns: Result<KernelOffsets, BtfError>,
    task: TaskOffsets,
    io_uring: Result<IoUringOffsets, BtfError>,
    filename: FilenameOffsets,
}

fn running() -> &'static Running {
    static RUNNING: std::sync::OnceLock<Running> = std::sync::OnceLock::new();
    RUNNING.get_or_init(|| match KernelBtf::from_sys_fs() {
        Ok(btf) => Running {
            kernel: btf.kernel_offsets(),
            mnt_ns: btf.mnt_ns_offsets(),
            task: btf.task_offsets(),
            io_uring: btf.io_uring_offsets(),
            filename: btf.filename_offsets(),
        },
        Err(e) => Running {
            kernel: Err(e.clone()),
            mnt_ns: Err(e.clone()),
            task: TaskOffsets::NONE,
            io_uring: Err(e),
            filename: FilenameOffsets::NONE,
        },
    })
}

/// The running kernel's mount namespace offsets alone (for kernels where the
/// directory walk's offsets are not all found).
pub fn running_mnt_ns_offsets() -> Result<KernelOffsets, BtfError> {
    running().mnt_ns.clone()
}

/// The offsets of the running kernel, or why they are not to be had.
pub fn running_kernel_offsets() -> Result<KernelOffsets, BtfError> {
    running().kernel.clone()
}

/// The running kernel's task offsets (each part `valid` where found).
pub fn running_task_offsets() -> TaskOffsets {
    running().task
}

/// The running kernel's `struct filename` offsets (`valid` 0 where not found).
pub fn running_filename_offsets() -> FilenameOffsets {
    running().filename
}

/// The running kernel's io_uring request offsets, or why they are not to be had.
pub fn running_io_uring_offsets() -> Result<IoUringOffsets, BtfError> {
    running().io_uring.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct s { int a; union { struct { int x; int y; }; long z; }; char *p; }`
    fn tiny_btf() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0x\0y\0z\0p\0char\0long\0".to_vec();
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            strings.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        };
        let mut types: Vec<u8> = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int (4 bytes)
        push(&[name("int"), info(KIND_INT, 0), 4, 32]);
        // 2: char (1 byte), 3: char *
        push(&[name("char"), info(KIND_INT, 0), 1, 8]);
        push(&[0, info(KIND_PTR, 0), 2]);
        // 4: long
        push(&[name("long"), info(KIND_INT, 0), 8, 64]);
        // 5: anonymous struct { int x; int y; }
        push(&[0, info(KIND_STRUCT, 2), 8, name("x"), 1, 0, name("y"), 1, 32]);
        // 6: anonymous union { struct 5; long z; }
        push(&[0, info(KIND_UNION, 2), 8, 0, 5, 0, name("z"), 4, 0]);
        // 7: struct s { int a; union 6 (at 8); char *p (at 16); }
        push(&[name("s"), info(KIND_STRUCT, 3), 24, name("a"), 1, 0, 0, 6, 64, name("p"), 3, 128]);
        // 8: a typedef and a const, to be skipped
        push(&[name("z"), info(KIND_TYPEDEF, 0), 7]);
        push(&[0, info(KIND_CONST, 0), 8]);
        let mut blob = Vec::new();
        let hdr_len = 24u32;
        blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        blob.push(1); // version
        blob.push(0); // flags
        for w in [hdr_len, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_structs() {
        let btf = KernelBtf::parse(&tiny_btf()).unwrap();
        assert_eq!(btf.member("s", "a").unwrap(), MemberInfo { offset: 0, size: 4 });
        assert_eq!(btf.member("s", "x").unwrap(), MemberInfo { offset: 8, size: 4 });
        assert_eq!(btf.member("s", "y").unwrap(), MemberInfo { offset: 12, size: 4 });
        assert_eq!(btf.member("s", "z").unwrap(), MemberInfo { offset: 8, size: 8 });
        assert_eq!(btf.member("s", "p").unwrap(), MemberInfo { offset: 16, size: 8 });
        assert_eq!(btf.pointer("s", "p").unwrap(), 16);
        assert!(matches!(btf.pointer("s", "a"), Err(BtfError::Size(..))));
        assert_eq!(btf.struct_size("s").unwrap(), 24);
        assert_eq!(btf.member("s", "nope"), Err(BtfError::NoMember("s".into(), "nope".into())));
        assert_eq!(btf.member("t", "a"), Err(BtfError::NoStruct("t".into())));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(KernelBtf::parse(b"hello world, not btf at all"), Err(BtfError::Format(_))));
        let blob = tiny_btf();
        assert!(matches!(KernelBtf::parse(&blob[..blob.len() - 20]), Err(BtfError::Format(_))));
        assert!(matches!(KernelBtf::parse(&blob[..10]), Err(BtfError::Format(_))));
    }

    /// The running kernel's BTF: every offset found, and consistent with the
    /// layouts that known neighbouring fields imply.
    #[test]
    fn running_kernel_offsets_are_plausible_and_consistent() {
        let btf = KernelBtf::from_sys_fs().expect("this machine has /sys/kernel/btf/vmlinux");
        let o = btf.kernel_offsets().expect("every member the directory walk needs");
        assert_eq!(o.valid, 1);
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }
        assert_eq!((o.path_mnt, o.path_dentry), (0, 8));
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
        assert_eq!((o.qstr_len, o.qstr_name), (4, 8));
        assert_eq!(btf.member("qstr", "hash").unwrap().offset, 0);
        assert_eq!(btf.member("qstr", "hash_len").unwrap(), MemberInfo { offset: 0, size: 8 });
        // fs_struct: pwd follows root, both struct path.
        assert_eq!(o.fs_pwd, btf.member("fs_struct", "root").unwrap().offset + 16);
        // mount: mnt_parent, mnt_mountpoint, mnt follow one another after mnt_hash.
        let hash = btf.member("mount", "mnt_hash").unwrap();
        assert_eq!(o.mount_parent, hash.offset + hash.size);
        assert_eq!(o.mount_mountpoint, o.mount_parent + 8);
        assert_eq!(o.mount_mnt, o.mount_mountpoint + 8);
        assert_eq!(o.vfsmount_root, 0);
        assert!(o.mount_ns > o.mount_mnt && o.mount_ns < btf.struct_size("mount").unwrap());
        // fdtable { unsigned int max_fds; struct file **fd; ... }
        assert_eq!((o.fdtable_max_fds, o.fdtable_fd), (0, 8));
        // dentry: d_name right after d_parent (the union with __d_name on new kernels).
        assert_eq!(o.dentry_name, o.dentry_parent + 8);
        // file: f_path inside a union with __f_path on new kernels.
        if let Ok(alias) = btf.member("file", "__f_path") {
            assert_eq!(alias.offset, o.file_f_path);
        }
        // Everything within its struct, pointers 8-aligned.
        let task = btf.struct_size("task_struct").unwrap();
        assert!(o.task_fs < task && o.task_files < task && o.task_fs != o.task_files);
        assert!(o.task_fs.is_multiple_of(8) && o.task_files.is_multiple_of(8));
        assert_eq!(o.task_files, btf.member("task_struct", "files").unwrap().offset);
        assert!(o.file_f_path + 16 <= btf.struct_size("file").unwrap());
        assert!(o.files_fdt + 8 <= btf.struct_size("files_struct").unwrap());
        assert!(o.dentry_parent + 8 <= btf.struct_size("dentry").unwrap());
        // The mount namespace number: nsproxy's mnt_ns follows uts_ns and ipc_ns.
        assert_eq!(o.mnt_ns_valid, 1);
        assert_eq!(o.nsproxy_mnt_ns, btf.member("nsproxy", "ipc_ns").unwrap().offset + 8);
        assert!(o.task_nsproxy.is_multiple_of(8) && o.task_nsproxy < task);
        assert!(o.mnt_ns_inum + 4 <= btf.struct_size("mnt_namespace").unwrap());
    }

    /// The signal and 32-bit offsets of the running kernel, against the
    /// layouts their neighbours imply.
    #[test]
    fn running_kernel_task_offsets_are_consistent() {
        let btf = KernelBtf::from_sys_fs().expect("this machine has /sys/kernel/btf/vmlinux");
        let t = btf.task_offsets();
        assert_eq!((t.signals_valid, t.compat_valid, t.parent_valid), (1, 1, 1), "{t:?}");
        // pid_t pid; pid_t tgid; side by side.
        assert_eq!(t.task_tgid, btf.member("task_struct", "pid").unwrap().offset + 4);
        // struct sigpending { struct list_head list; sigset_t signal; }
        assert_eq!(t.task_pending_signal, btf.member("task_struct", "pending").unwrap().offset + 16);
        // struct sigaction { sa_handler; sa_flags; sa_restorer; sa_mask; } is k_sigaction's first member.
        assert_eq!((t.sa_handler, t.sa_flags), (0, 8));
        assert_eq!(t.k_sigaction_size, 32);
        // x86_64: thread_info is task_struct's first member; status follows flags and syscall_work.
        assert_eq!(t.thread_status, 16);
        // struct cred { usage; uid; gid; suid; sgid; euid; .. }: euid is four ids after uid.
        assert_eq!(t.cred_valid, 1, "{t:?}");
        assert_eq!(t.cred_euid, btf.member("cred", "uid").unwrap().offset + 16);
        assert_eq!(t.task_cred, btf.member("task_struct", "real_cred").unwrap().offset + 8, "cred follows real_cred");
        let io = btf.io_uring_offsets().expect("this kernel has io_uring");
        assert_eq!(io.req_open, 0, "the command data opens struct io_kiocb");
        assert_eq!((io.open_dfd, io.open_filename), (8, 16), "struct io_open {{ file; dfd; file_slot; filename; .. }}");
        assert_eq!(io.open_how, 24);
        let f = btf.filename_offsets();
        assert_eq!((f.valid, f.name, f.uptr), (1, 0, 8), "6.18's struct filename keeps the user's pointer");
    }
}
