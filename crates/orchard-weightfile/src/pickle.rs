//! A restricted pickle reader: enough of Python's pickle machine to read a PyTorch state dict, and nothing
//! that executes.
//!
//! A `.pth` file is a pickle, and unpickling in Python can call any importable function. This reader never
//! calls anything: it knows a short list of globals a state dict needs (`collections.OrderedDict`, the
//! `torch.*Storage` type markers, `torch._utils._rebuild_tensor_v2` and `_rebuild_parameter`) and refuses
//! every other global by name. Persistent ids (PyTorch's storages) come back as [`Value::Storage`] for the
//! caller to resolve; tensors as [`Value::Tensor`] descriptions (storage, offset, size, stride) that the
//! caller materialises once the storages' bytes are known.
//!
//! Every read is bounds-checked and every count is limited by the input's length, so arbitrary bytes give an
//! error, never a panic or a huge allocation (the property a fuzzer checks).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use crate::Dtype;

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("the pickle ends early, at byte {0}")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {at}")]
    UnsupportedOpcode { opcode: u8, at: usize },
    #[error("refused to load the global {0}: a state dict needs only tensors, storages and OrderedDict, and nothing in this file is ever executed")]
    ForbiddenGlobal(String),
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: String },
}

/// A PyTorch storage referenced by a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// Element type, from the storage class (`torch.FloatStorage` → [`Dtype::F32`]).
    pub dtype: Dtype,
    /// Key of the storage's bytes: the zip entry `data/<key>`, or its place in a legacy file.
    pub key: String,
    /// Number of elements of the whole storage.
    pub numel: u64,
    /// Legacy storage views: (view key, offset in elements, size in elements) into the storage `key`.
    pub view: Option<(String, u64, u64)>,
}

/// A tensor as a view of a storage, not yet read.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    /// Offset of the first element, in elements.
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// A global this reader accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

/// A Python object as far as a state dict needs it. Containers are shared, as Python's are, so that a
/// memoised container that is filled later is seen filled wherever it is referenced.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64, as little-endian two's-complement bytes (PyTorch's legacy magic number).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

/// Drops nested containers with a loop instead of recursion: a hostile pickle can nest lists a million
/// deep in a few megabytes, which recursive dropping would overflow the stack on.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut value) = pending.pop() {
            take_children(&mut value, &mut pending);
        }
    }
}

/// Moves the children of `value` (when it is their only owner) to `out`.
fn take_children(value: &mut Value, out: &mut Vec<Value>) {
    match value {
        Value::Tuple(items) => {
            if let Some(items) = Rc::get_mut(items) {
                out.append(items);
            }
        }
        // Lists and dicts are also held weakly by their pickle (see [`Pickle`]), so uniqueness is the strong
        // count's alone.
        Value::List(items) if Rc::strong_count(items) == 1 => out.append(&mut items.borrow_mut()),
        Value::Dict(items) if Rc::strong_count(items) == 1 => {
            for (k, v) in items.borrow_mut().drain(..) {
                out.push(k);
                out.push(v);
            }
        }
        _ => {}
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Elements of a tuple or list, copied out.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The accepted globals, by module and name.
fn global(module: &str, name: &str) -> Result<Global, PickleError> {
    let storage = |dtype| Ok(Global::Storage(dtype));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => Ok(Global::RebuildParameter),
        ("torch", "FloatStorage") => storage(Dtype::F32),
        ("torch", "DoubleStorage") => storage(Dtype::F64),
        ("torch", "HalfStorage") => storage(Dtype::F16),
        ("torch", "BFloat16Storage") => storage(Dtype::BF16),
        ("torch", "LongStorage") => storage(Dtype::I64),
        ("torch", "IntStorage") => storage(Dtype::I32),
        ("torch", "ShortStorage") => storage(Dtype::I16),
        ("torch", "CharStorage") => storage(Dtype::I8),
        ("torch", "ByteStorage") => storage(Dtype::U8),
        ("torch", "BoolStorage") => storage(Dtype::Bool),
        _ => Err(PickleError::ForbiddenGlobal(format!("{module}.{name}"))),
    }
}

/// One pickle read. Its lists and dicts are emptied when it is dropped (so values taken out of it must
/// not outlive it): a pickle can make a list that contains itself, a reference cycle that would otherwise
/// never be freed.
#[derive(Debug)]
pub struct Pickle {
    pub value: Value,
    /// Offset just past the pickle's STOP opcode.
    pub end: usize,
    /// Every storage the pickle referenced, in order, including those outside the value's state dict.
    pub storages: Vec<Rc<StorageRef>>,
    containers: Vec<Container>,
}

impl Drop for Pickle {
    fn drop(&mut self) {
        empty(&mut self.containers);
    }
}

/// A list or dict the machine made, held weakly so that it can be emptied at the end.
#[derive(Debug)]
enum Container {
    List(Weak<RefCell<Vec<Value>>>),
    Dict(Weak<RefCell<Vec<(Value, Value)>>>),
}

/// Empties every container still alive, breaking any cycle among them.
fn empty(containers: &mut Vec<Container>) {
    for container in containers.drain(..) {
        // Taken out first, then dropped: dropping may reach this same container through a cycle.
        match container {
            Container::List(list) => drop(list.upgrade().map(|l| std::mem::take(&mut *l.borrow_mut()))),
            Container::Dict(dict) => drop(dict.upgrade().map(|d| std::mem::take(&mut *d.borrow_mut()))),
        }
    }
}

/// Reads one pickle starting at `start`.
pub fn read(bytes: &[u8], start: usize) -> Result<Pickle, PickleError> {
    let mut machine = Machine {
        bytes,
        pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        containers: Vec::new(),
    };
    match machine.run() {
        Ok(value) => {
            let containers = std::mem::take(&mut machine.containers);
            Ok(Pickle { value, end: machine.pos, storages: std::mem::take(&mut machine.storages), containers })
        }
        Err(e) => {
            empty(&mut machine.containers);
            Err(e)
        }
    }
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: Vec<Rc<StorageRef>>,
    containers: Vec<Container>,
}

impl Machine<'_> {
    fn new_list(&mut self, items: Vec<Value>) -> Value {
        let list = Rc::new(RefCell::new(items));
        self.containers.push(Container::List(Rc::downgrade(&list)));
        Value::List(list)
    }

    fn new_dict(&mut self, items: Vec<(Value, Value)>) -> Value {
        let dict = Rc::new(RefCell::new(items));
        self.containers.push(Container::Dict(Rc::downgrade(&dict)));
        Value::Dict(dict)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(PickleError::Truncated(self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated(self.bytes.len()))?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(line)
    }

    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed { at: self.pos, what: what.into() }
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack.pop().ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let at = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed { at, what: "empty stack".into() })
    }

    /// Pops everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no mark"))?;
        if mark > self.stack.len() {
            return Err(self.malformed("mark above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn string(&mut self, len: usize) -> Result<Value, PickleError> {
        let at = self.pos;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| PickleError::Malformed { at, what: "invalid UTF-8".into() })?;
        Ok(Value::Str(s.to_string()))
    }

    fn long(&mut self, len: usize) -> Result<Value, PickleError> {
        let bytes = self.take(len)?.to_vec();
        if bytes.len() <= 8 {
            let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
            let mut full = [if negative { 0xff } else { 0 }; 8];
            full[..bytes.len()].copy_from_slice(&bytes);
            Ok(Value::Int(i64::from_le_bytes(full)))
        } else {
            Ok(Value::BigInt(bytes))
        }
    }

    fn memo_get(&self, key: u32) -> Result<Value, PickleError> {
        self.memo.get(&key).cloned().ok_or_else(|| self.malformed(format!("memo key {key} is unset")))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let value = self.top()?.clone();
        self.memo.insert(key, value);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        let dict = match self.top()? {
            Value::Dict(dict) => Some(dict.clone()),
            _ => None,
        };
        let Some(dict) = dict else { return Err(self.malformed("SETITEM(S) on a non-dict")) };
        let mut dict = dict.borrow_mut();
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let list = match self.top()? {
            Value::List(list) => Some(list.clone()),
            _ => None,
        };
        let Some(list) = list else { return Err(self.malformed("APPEND(S) on a non-list")) };
        list.borrow_mut().extend(items);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let opcode = self.u8()?;
            match opcode {
                0x80 => {
                    let _protocol = self.u8()?;
                }
                0x95 => {
                    let _frame_len = self.le::<8>()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?) as i64;
                    self.stack.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?) as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let v = self.long(n)?;
                    self.stack.push(v);
                }
                0x8b => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let v = self.long(n)?;
                    self.stack.push(v);
                }
                b'I' => {
                    let line = self.line()?;
                    let v = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.parse().map_err(|_| self.malformed(format!("INT {s:?}")))?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    let n = usize::try_from(n).map_err(|_| PickleError::Truncated(self.pos))?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                // Python 2 byte strings (BINSTRING, SHORT_BINSTRING) and bytes (BINBYTES, SHORT_BINBYTES):
                // PyTorch's own keys in old files are such strings, read as text when they are UTF-8.
                b'T' | b'U' | b'B' | b'C' => {
                    let n = match opcode {
                        b'T' | b'B' => u32::from_le_bytes(self.le()?) as usize,
                        _ => self.u8()? as usize,
                    };
                    let bytes = self.take(n)?.to_vec();
                    let v = match (opcode, String::from_utf8(bytes)) {
                        (b'T' | b'U', Ok(s)) => Value::Str(s),
                        (_, Ok(s)) => Value::Bytes(s.into_bytes()),
                        (_, Err(e)) => Value::Bytes(e.into_bytes()),
                    };
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (opcode - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.malformed("TUPLE with too few items"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => {
                    let list = self.new_list(Vec::new());
                    self.stack.push(list);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let list = self.new_list(items);
                    self.stack.push(list);
                }
                b'}' => {
                    let dict = self.new_dict(Vec::new());
                    self.stack.push(dict);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.new_dict(Vec::new());
                    self.stack.push(dict);
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' => {
                    let key = self.u8()? as u32;
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u32;
                    self.memo_put(key)?;
                }
                b'h' => {
                    let key = self.u8()? as u32;
                    self.stack.push(self.memo_get(key)?);
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.stack.push(self.memo_get(key)?);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(global(&module, &name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    self.stack.push(Value::Global(global(module, name)?));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD sets an object's state: the attributes of an OrderedDict (PyTorch's `_metadata`)
                    // or of a parameter. A state dict does not need them; they are dropped.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => {
                            let what = format!("BUILD on a {}", other.type_name());
                            return Err(self.malformed(what));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                _ => return Err(PickleError::UnsupportedOpcode { opcode, at }),
            }
        }
    }

    /// Calls one of the accepted globals, without executing anything: each builds a [`Value`].
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            return Err(self.malformed(format!("REDUCE on a {}", callable.type_name())));
        };
        let args = args.items().ok_or_else(|| self.malformed("REDUCE arguments are not a tuple"))?;
        match global {
            Global::OrderedDict => {
                let mut items = Vec::new();
                if let Some(pairs) = args.first().and_then(Value::items) {
                    for pair in pairs {
                        match pair.items().as_deref() {
                            Some([k, v]) => items.push((k.clone(), v.clone())),
                            _ => return Err(self.malformed("OrderedDict from something other than pairs")),
                        }
                    }
                }
                Ok(self.new_dict(items))
            }
            Global::RebuildTensor => {
                let (Some(Value::Storage(storage)), Some(offset), Some(size), Some(stride)) = (
                    args.first(),
                    args.get(1).and_then(Value::as_int),
                    args.get(2).and_then(Value::items),
                    args.get(3).and_then(Value::items),
                ) else {
                    return Err(
                        self.malformed("_rebuild_tensor arguments are not (storage, offset, size, stride, ...)")
                    );
                };
                let ints = |v: Vec<Value>| v.iter().map(Value::as_int).collect::<Option<Vec<i64>>>();
                let (Some(size), Some(stride)) = (ints(size), ints(stride)) else {
                    return Err(self.malformed("tensor size or stride is not a tuple of integers"));
                };
                Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, size, stride })))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.malformed("_rebuild_parameter without a tensor")),
            },
            Global::Storage(_) => Err(self.malformed("a storage class called directly")),
        }
    }

    /// PyTorch's persistent ids: `('storage', storage_class, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
        let items = pid.items().ok_or_else(|| self.malformed("persistent id is not a tuple"))?;
        let bad = || self.malformed("persistent id is not ('storage', type, key, location, numel[, view])");
        let [typename, class, key, _location, numel, rest @ ..] = items.as_slice() else {
            return Err(bad());
        };
        let (Some("storage"), Value::Global(Global::Storage(dtype)), Some(numel)) =
            (typename.as_str(), class, numel.as_int())
        else {
            return Err(bad());
        };
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => return Err(bad()),
        };
        let view = match rest.first() {
            None | Some(Value::None) => None,
            Some(view) => match view.items().as_deref() {
                Some([Value::Str(k), offset, size]) => match (offset.as_int(), size.as_int()) {
                    (Some(o), Some(s)) if o >= 0 && s >= 0 => Some((k.clone(), o as u64, s as u64)),
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            },
        };
        let numel = u64::try_from(numel).map_err(|_| bad())?;
        let storage = Rc::new(StorageRef { dtype: *dtype, key, numel, view });
        self.storages.push(storage.clone());
        Ok(Value::Storage(storage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containers_numbers_and_strings() {
        // pickle.dumps({'a': [1, -2, 300, 70000], 'b': (1.5, None, True), 'c': 'x'}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00eX\x01\x00\x00\x00bq\x03G?\xf8\x00\x00\x00\x00\x00\x00N\x88\x87q\x04X\x01\x00\x00\x00cq\x05X\x01\x00\x00\x00xq\x06u.";
        let pickle = read(bytes, 0).unwrap();
        assert_eq!(pickle.end, bytes.len());
        let Value::Dict(d) = &pickle.value else { panic!("not a dict") };
        let d = d.borrow();
        assert_eq!(d[0].0.as_str(), Some("a"));
        let ints: Vec<i64> = d[0].1.items().unwrap().iter().map(|v| v.as_int().unwrap()).collect();
        assert_eq!(ints, [1, -2, 300, 70000]);
        let b = d[1].1.items().unwrap();
        assert!(matches!(b[..], [Value::Float(f), Value::None, Value::Bool(true)] if f == 1.5));
        assert_eq!(d[2].1.as_str(), Some("x"));
    }

    #[test]
    fn refuses_unknown_globals_by_name() {
        // pickle.dumps(os.system) at protocol 2: "c posix\nsystem\n"
        let err = read(b"\x80\x02cposix\nsystem\nq\x00.", 0).unwrap_err();
        assert_eq!(err, PickleError::ForbiddenGlobal("posix.system".into()));
        assert!(err.to_string().contains("posix.system"));
        let err = read(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", 0).unwrap_err();
        assert_eq!(err, PickleError::ForbiddenGlobal("builtins.eval".into()));
    }

    #[test]
    fn every_prefix_of_a_pickle_is_an_error_not_a_panic() {
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffeu.";
        for end in 0..bytes.len() {
            assert!(read(&bytes[..end], 0).is_err(), "prefix of {end} bytes");
        }
        // Flipping each byte must never panic either.
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0xa5;
            let _ = read(&b, 0);
        }
    }

    #[test]
    fn deeply_nested_containers_are_read_and_dropped_without_recursion() {
        // pickle.dumps of a list nested a million deep, as the opcodes protocol 2 gives: "]" then "]a" ...
        let depth = 1_000_000;
        let mut bytes = b"\x80\x02]".to_vec();
        for _ in 0..depth {
            bytes.extend_from_slice(b"]");
        }
        for _ in 0..depth {
            bytes.extend_from_slice(b"a");
        }
        bytes.push(b'.');
        let pickle = read(&bytes, 0).unwrap();
        assert_eq!(pickle.value.items().map(|v| v.len()), Some(1));
        drop(pickle);
    }

    #[test]
    fn a_list_that_contains_itself_is_freed() {
        // Found by fuzzing (fuzz/ target pickle, LeakSanitizer): `l = []; l.append(l)` is a reference
        // cycle of Rc's, which leaked every time such a file was read, and on errors too.
        let pickle = read(b"\x80\x02]q\x00h\x00a.", 0).unwrap();
        let Value::List(list) = &pickle.value else { panic!("not a list") };
        let weak = Rc::downgrade(list);
        assert!(matches!(&list.borrow()[0], Value::List(inner) if Rc::ptr_eq(inner, list)));
        drop(pickle);
        assert!(weak.upgrade().is_none(), "the list outlived its pickle");
        let err = read(b"\x80\x02}q\x00(X\x01\x00\x00\x00kh\x00u]q\x01h\x01a\xff", 0);
        assert!(err.is_err());
    }

    #[test]
    fn big_integers_keep_their_bytes() {
        // PyTorch's legacy magic number 0x1950a86a20f9469cfc6c as LONG1.
        let p = read(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.", 0).unwrap();
        assert!(matches!(p.value, Value::BigInt(ref b) if b == b"l\xfc\x9cF\xf9 j\xa8P\x19"));
        assert_eq!(read(b"\x80\x02\x8a\x02\x00\xff.", 0).unwrap().value.as_int(), Some(-256));
    }
}
