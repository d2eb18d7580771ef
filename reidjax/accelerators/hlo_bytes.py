"""Where a compiled step's memory traffic goes: bytes per HLO op, grouped by model part.

A compiled XLA module is a list of top-level ops (fusions, convolutions, copies,
collectives); each reads its operands from memory and writes its output. The bytes of an
op here are its operands' sizes plus its output's size (what XLA's cost analysis counts as
"bytes accessed", before its corrections for partial reads of sliced operands). Each op
carries the JAX name stack of the code that made it (`metadata={op_name=...}`): with Flax
modules that is the module path (`jvp(VideoReIDNet)/backbone/layer3_0/conv2/...`), so the
bytes can be grouped by model part, by direction (forward, backward) and by primitive.

`attribute(hlo_text)` parses `compiled.as_text()`; `tools/aot_compile.py --attribute N`
prints the top groups.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

DTYPE_BYTES = {
    "pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
    "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\](\{[^}]*\})?")
INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s([\w\-]+)\((.*)$")
COMPUTATION = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")
OP_NAME = re.compile(r'op_name="([^"]*)"')
CALLED = re.compile(r"\b(body|condition|branch_computations|true_computation|false_computation)"
                    r"=\{?([%\w.\-, ]+)\}?")  # fmt: skip
# Ops that move no data (views, tuples, parameters) or run no kernel of their own.
FREE = {
    "parameter", "get-tuple-element", "tuple", "bitcast", "constant", "after-all",
    "partition-id", "replica-id", "opt-barrier", "copy-done", "all-reduce-done",
    "all-gather-done", "collective-permute-done", "send-done", "recv-done", "async-done",
    "slice-done",
    "while", "conditional", "call",
}  # fmt: skip


def arrays(shape: str) -> list[tuple[float, bool]]:
    """(bytes, in HBM) of each array of an HLO shape (an array or a tuple), in order; an
    array whose layout puts it in memory space `S(1)` (the TPU's on-chip VMEM) is not in
    HBM. Tiling padding is not counted."""
    return [
        (DTYPE_BYTES[d] * math.prod(int(x) for x in dims.split(",") if x), "S(1)" not in layout)
        for d, dims, layout in ARRAY.findall(shape)
    ]


def shape_bytes(shape: str, hbm_only: bool = False) -> float:
    """Bytes of an HLO shape; `hbm_only`: of its arrays in HBM."""
    return sum(b for b, in_hbm in arrays(shape) if in_hbm or not hbm_only)


@dataclasses.dataclass(frozen=True)
class Op:
    """One top-level op: its name, opcode, bytes read and written (all of them; and those
    in HBM), and its JAX name stack."""

    name: str
    opcode: str
    read: float
    written: float
    hbm: float
    op_name: str

    @property
    def bytes(self) -> float:
        return self.read + self.written


def _split_operands(rest: str) -> tuple[list[str], str]:
    """The operand names of an instruction's argument list, and the text after it."""
    depth, end = 1, len(rest)
    for i, ch in enumerate(rest):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            end = i
            break
    return re.findall(r"%([\w.\-]+)", rest[:end]), rest[end + 1 :]


def computations(
    hlo_text: str,
) -> tuple[str, dict[str, list[tuple[str, str, str, list[str], str]]]]:
    """(the entry computation's name, each computation's instructions as
    (name, shape, opcode, operand names, attributes)) of an HLO module's text."""
    comps: dict[str, list[tuple[str, str, str, list[str], str]]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        head = COMPUTATION.match(line)
        if head:
            current = head.group(2)
            comps[current] = []
            if head.group(1):
                entry = current
            continue
        inst = INSTRUCTION.match(line) if current else None
        if inst:
            name, shape, opcode, rest = inst.groups()
            operands, attrs = _split_operands(rest)
            comps[current].append((name, shape, opcode, operands, attrs))
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return entry, comps


def parse(hlo_text: str) -> list[Op]:
    """The top-level ops of a compiled module (the entry computation and the bodies of its
    loops and conditionals; fused computations are inside their fusion op)."""
    entry, comps = computations(hlo_text)
    ops, seen, todo = [], set(), [entry]
    while todo:
        comp = todo.pop()
        if comp in seen or comp not in comps:
            continue
        seen.add(comp)
        sizes = {name: shape_bytes(shape) for name, shape, *_ in comps[comp]}
        hbm = {name: shape_bytes(shape, True) for name, shape, *_ in comps[comp]}
        for name, shape, opcode, operands, attrs in comps[comp]:
            for _, called in CALLED.findall(attrs):
                todo.extend(c.strip().lstrip("%") for c in called.split(","))
            if opcode in FREE or 'custom_call_target="ConcatBitcast"' in attrs:
                continue  # (ConcatBitcast: adjacent slices viewed as one array)
            match = OP_NAME.search(attrs)
            read = sum(sizes.get(o, 0.0) for o in operands)
            hbm_read = sum(hbm.get(o, 0.0) for o in operands)
            written, hbm_written = sizes[name], hbm[name]
            parts = arrays(shape)
            if opcode == "copy-start":  # (destination, source, context)
                (written, dst_hbm), (read, src_hbm) = parts[0], parts[1]
                hbm_read, hbm_written = read * src_hbm, written * dst_hbm
            elif opcode == "slice-start":  # ((source), slice, context): reads the slice
                (_, src_hbm), (written, dst_hbm) = parts[0], parts[1]
                read, hbm_read, hbm_written = written, written * src_hbm, written * dst_hbm
            elif opcode in ("slice", "dynamic-slice"):  # reads the slice, not the operand
                src_hbm = bool(operands) and hbm.get(operands[0], 0.0) > 0
                read, hbm_read = written, written * src_hbm
            match = OP_NAME.search(attrs)
            ops.append(
                Op(
                    name,
                    opcode,
                    read=read,
                    written=written,
                    hbm=hbm_read + hbm_written,
                    op_name=match.group(1) if match else "",
                )
            )
    return ops


def part_of(op_name: str, depth: int = 3) -> tuple[str, str, str]:
    """(direction, model part, primitive) of an op's JAX name stack.

    direction: `forward`, `backward` (under `transpose(...)`), or `step` (outside the model:
    the optimizer, the divergence guard, the augmentation). The model part is the module
    path cut at `depth` components (`backbone/layer3_0/layer3_0.conv2`).
    """
    parts = [p for p in op_name.split("/") if p]
    if not parts:
        return "step", "(no name)", "?"
    primitive = parts[-1]
    model = next((i for i, p in enumerate(parts) if "jvp(" in p), None)
    if model is None:
        scope = "/".join(p for p in parts[1:-1] if not p.startswith("jit(")) or "(step)"
        return "step", scope, primitive
    direction = "backward" if parts[model].startswith("transpose(") else "forward"
    modules = [p for p in parts[model + 1 : -1] if not p.startswith("jit(")]
    return direction, "/".join(modules[:depth]) or "(model)", primitive


def attribute(hlo_text: str, depth: int = 3) -> dict:
    """Bytes grouped four ways: by (direction, part), by part, by primitive and by opcode;
    each a list of (key, bytes) largest first, and the same of HBM bytes (`hbm_part`, ...);
    with `total` (all memory spaces, as XLA's
    cost analysis counts), `hbm` (the part in HBM) and the number of `ops`."""
    ops = parse(hlo_text)
    kinds = ("direction_part", "part", "primitive", "opcode")
    groups = {k: collections.Counter() for k in kinds + tuple(f"hbm_{k}" for k in kinds)}
    for op in ops:
        direction, part, primitive = part_of(op.op_name, depth)
        keys = (f"{direction}: {part}", part, f"{direction}: {primitive}", op.opcode)
        for kind, key in zip(kinds, keys, strict=True):
            groups[kind][key] += op.bytes
            groups[f"hbm_{kind}"][key] += op.hbm
    out = {k: v.most_common() for k, v in groups.items()}
    out["total"] = sum(op.bytes for op in ops)
    out["hbm"] = sum(op.hbm for op in ops)
    out["ops"] = len(ops)
    return out


VIEWS = {"bitcast", "get-tuple-element", "copy-done", "slice-done"}


def transfers(hlo_text: str) -> dict[str, float]:
    """HBM bytes of the entry computation's asynchronous copies (`copy-start`,
    `slice-start`: how the TPU compiler moves arrays between HBM and on-chip VMEM), by what
    they move. Each copy is traced through views back to the array it moves:

    - `parameters into VMEM`: arrays that are arguments of the step (weights, state);
    - `activations into VMEM`: arrays the step computed, read from HBM; of which
      `... read from pad/copy outputs`: the padded or re-laid-out copies that `pad` and
      `copy` ops made of other arrays;
    - `written to HBM`: arrays computed in VMEM and stored to HBM (kept for later ops).
    """
    entry, comps = computations(hlo_text)
    lines = comps[entry]
    producer = {name: (opcode, operands) for name, _, opcode, operands, _ in lines}

    def source(name: str) -> str:
        for _ in range(64):
            opcode, operands = producer.get(name, ("", []))
            if opcode not in VIEWS or not operands:
                break
            name = operands[0]
        return producer.get(name, ("", []))[0]

    out = collections.Counter()
    for _, shape, opcode, operands, _ in lines:
        if opcode not in ("copy-start", "slice-start"):
            continue
        parts = arrays(shape)
        if opcode == "copy-start":  # (destination, source, context)
            (size, dst_hbm), (_, src_hbm) = parts[0], parts[1]
        else:  # ((source), slice, context)
            (_, src_hbm), (size, dst_hbm) = parts[0], parts[1]
        if dst_hbm:
            out["written to HBM"] += size
        if src_hbm:
            kind = source(operands[0])
            if kind == "parameter":
                out["parameters into VMEM"] += size
            else:
                out["activations into VMEM"] += size
                if kind in ("pad", "copy"):
                    out["activations into VMEM read from pad/copy outputs"] += size
    return dict(out)
