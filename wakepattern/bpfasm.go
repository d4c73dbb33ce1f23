package wakepattern

import (
	"errors"

	"golang.org/x/net/bpf"
)

// This file is a small classic-BPF assembler with labels. The compiler in
// bpf.go emits abstract operations whose jump targets are labels or the two
// verdicts (accept, reject); bpfAsm.link lays them out, resolving each
// conditional jump (8-bit skips) either directly, or through a trampoline
// placed right after it: a 32-bit `ja` for a label, or a copy of the `ret`
// itself for a verdict. A conditional jump to a verdict reuses the nearest
// following `ret` of that verdict when one lies within reach.

// bpfTarget is a jump target: a label (>= 0) or one of the specials below.
type bpfTarget int32

const (
	bpfNext   bpfTarget = -1 // the instruction after the jump (and its trampolines)
	bpfAccept bpfTarget = -2 // return SnapLen
	bpfReject bpfTarget = -3 // return 0
)

type bpfOpKind uint8

const (
	bpfOpPlain bpfOpKind = iota + 1 // ins, any non-jump instruction
	bpfOpCond                       // conditional jump on A against val or X
	bpfOpJump                       // ja to a label
	bpfOpLabel                      // marker binding label
)

type bpfOp struct {
	kind   bpfOpKind
	ins    bpf.Instruction
	cond   bpf.JumpTest // JumpEqual, JumpGreaterThan, JumpGreaterOrEqual, JumpBitsSet
	val    uint32
	useX   bool
	jt, jf bpfTarget
	// trampolines decided by link: a far jt/jf goes through an instruction
	// placed right after the jump.
	trampT, trampF bool
}

// bpfAsm collects operations and links them into a program.
type bpfAsm struct {
	ops    []bpfOp
	labels int32
	accept uint32 // return value of bpfAccept
}

func (a *bpfAsm) newLabel() bpfTarget {
	l := bpfTarget(a.labels)
	a.labels++
	return l
}

func (a *bpfAsm) bind(l bpfTarget) { a.ops = append(a.ops, bpfOp{kind: bpfOpLabel, jt: l}) }

func (a *bpfAsm) emit(ins ...bpf.Instruction) {
	for _, in := range ins {
		a.ops = append(a.ops, bpfOp{kind: bpfOpPlain, ins: in})
	}
}

// jump emits "if A cond val goto jt else goto jf".
func (a *bpfAsm) jump(cond bpf.JumpTest, val uint32, jt, jf bpfTarget) {
	a.ops = append(a.ops, bpfOp{kind: bpfOpCond, cond: cond, val: val, jt: jt, jf: jf})
}

// jumpX emits "if A cond X goto jt else goto jf".
func (a *bpfAsm) jumpX(cond bpf.JumpTest, jt, jf bpfTarget) {
	a.ops = append(a.ops, bpfOp{kind: bpfOpCond, cond: cond, useX: true, jt: jt, jf: jf})
}

// jeq jumps to t when A == v and falls through otherwise.
func (a *bpfAsm) jeq(v uint32, t bpfTarget) { a.jump(bpf.JumpEqual, v, t, bpfNext) }

// jne jumps to t when A != v and falls through otherwise.
func (a *bpfAsm) jne(v uint32, t bpfTarget) { a.jump(bpf.JumpEqual, v, bpfNext, t) }

// jlt jumps to t when A < v.
func (a *bpfAsm) jlt(v uint32, t bpfTarget) { a.jump(bpf.JumpGreaterOrEqual, v, bpfNext, t) }

// jltX jumps to t when A < X.
func (a *bpfAsm) jltX(t bpfTarget) { a.jumpX(bpf.JumpGreaterOrEqual, bpfNext, t) }

// jgtX jumps to t when A > X.
func (a *bpfAsm) jgtX(t bpfTarget) { a.jumpX(bpf.JumpGreaterThan, t, bpfNext) }

// goTo jumps unconditionally; a verdict becomes a ret.
func (a *bpfAsm) goTo(t bpfTarget) {
	switch t {
	case bpfAccept:
		a.emit(bpf.RetConstant{Val: a.accept})
	case bpfReject:
		a.emit(bpf.RetConstant{Val: 0})
	case bpfNext:
	default:
		a.ops = append(a.ops, bpfOp{kind: bpfOpJump, jt: t})
	}
}

// size is a lower bound of the linked program's length.
func (a *bpfAsm) size() int {
	n := 0
	for i := range a.ops {
		if a.ops[i].kind != bpfOpLabel {
			n++
		}
	}
	return n
}

var errBPFTooLong = errors.New("program too long")

// link resolves the jumps and returns the program. It fails with
// errBPFTooLong when the result exceeds max instructions.
func (a *bpfAsm) link(max int) ([]bpf.Instruction, error) {
	if a.size() > max {
		return nil, errBPFTooLong
	}
	addr := make([]int, len(a.ops)) // address of each op (labels: next instruction)
	labelAddr := make([]int, a.labels)
	var nextAcc, nextRej []int
	for {
		// Lay out.
		pc := 0
		for i := range a.ops {
			o := &a.ops[i]
			addr[i] = pc
			switch o.kind {
			case bpfOpLabel:
				labelAddr[o.jt] = pc
			case bpfOpCond:
				pc++
				if o.trampT {
					pc++
				}
				if o.trampF {
					pc++
				}
			default:
				pc++
			}
		}
		if pc > max {
			return nil, errBPFTooLong
		}
		// Nearest ret of each verdict at or after each address.
		nextAcc = fill(nextAcc, pc+1)
		nextRej = fill(nextRej, pc+1)
		for i := len(a.ops) - 1; i >= 0; i-- {
			o := &a.ops[i]
			switch {
			case o.kind == bpfOpPlain:
				if r, ok := o.ins.(bpf.RetConstant); ok {
					if r.Val == a.accept {
						nextAcc[addr[i]] = addr[i]
					}
					if r.Val == 0 {
						nextRej[addr[i]] = addr[i]
					}
				}
			case o.kind == bpfOpCond:
				p := addr[i] + 1
				if o.trampT {
					markRet(o.jt, p, nextAcc, nextRej)
					p++
				}
				if o.trampF {
					markRet(o.jf, p, nextAcc, nextRej)
				}
			}
		}
		for p := pc - 1; p >= 0; p-- {
			if nextAcc[p] < 0 {
				nextAcc[p] = nextAcc[p+1]
			}
			if nextRej[p] < 0 {
				nextRej[p] = nextRej[p+1]
			}
		}
		// Widen what does not reach.
		changed := false
		for i := range a.ops {
			o := &a.ops[i]
			if o.kind != bpfOpCond {
				continue
			}
			after := addr[i] + 1
			if o.trampT {
				after++
			}
			if o.trampF {
				after++
			}
			if !o.trampT && o.jt != bpfNext && !a.reaches(o.jt, addr[i], after, labelAddr, nextAcc, nextRej) {
				o.trampT, changed = true, true
			}
			if !o.trampF && o.jf != bpfNext && !a.reaches(o.jf, addr[i], after, labelAddr, nextAcc, nextRej) {
				o.trampF, changed = true, true
			}
		}
		if !changed {
			return a.emitLinked(pc, addr, labelAddr, nextAcc, nextRej), nil
		}
	}
}

func fill(s []int, n int) []int {
	if cap(s) < n {
		s = make([]int, n)
	}
	s = s[:n]
	for i := range s {
		s[i] = -1
	}
	return s
}

func markRet(t bpfTarget, p int, nextAcc, nextRej []int) {
	switch t {
	case bpfAccept:
		nextAcc[p] = p
	case bpfReject:
		nextRej[p] = p
	}
}

// dest returns the address a jump at pc (whose fall-through is after)
// would go to for t, or -1.
func (a *bpfAsm) dest(t bpfTarget, pc, after int, labelAddr, nextAcc, nextRej []int) int {
	switch t {
	case bpfNext:
		return after
	case bpfAccept:
		return nextAcc[pc+1]
	case bpfReject:
		return nextRej[pc+1]
	}
	return labelAddr[t]
}

func (a *bpfAsm) reaches(t bpfTarget, pc, after int, labelAddr, nextAcc, nextRej []int) bool {
	d := a.dest(t, pc, after, labelAddr, nextAcc, nextRej)
	return d > pc && d-pc-1 <= 255
}

func (a *bpfAsm) emitLinked(n int, addr, labelAddr, nextAcc, nextRej []int) []bpf.Instruction {
	out := make([]bpf.Instruction, 0, n)
	ret := func(t bpfTarget) bpf.Instruction {
		if t == bpfAccept {
			return bpf.RetConstant{Val: a.accept}
		}
		return bpf.RetConstant{Val: 0}
	}
	tramp := func(t bpfTarget, pc int) bpf.Instruction {
		if t == bpfAccept || t == bpfReject {
			return ret(t)
		}
		// t is a label: link never widens a jump to bpfNext, which is
		// at most two instructions away.
		return bpf.Jump{Skip: uint32(labelAddr[t] - pc - 1)}
	}
	for i := range a.ops {
		o := &a.ops[i]
		pc := addr[i]
		switch o.kind {
		case bpfOpLabel:
		case bpfOpPlain:
			out = append(out, o.ins)
		case bpfOpJump:
			out = append(out, bpf.Jump{Skip: uint32(labelAddr[o.jt] - pc - 1)})
		case bpfOpCond:
			after := pc + 1
			tp, fp := -1, -1
			if o.trampT {
				tp = after
				after++
			}
			if o.trampF {
				fp = after
				after++
			}
			dt, df := tp, fp
			if dt < 0 {
				dt = a.dest(o.jt, pc, after, labelAddr, nextAcc, nextRej)
			}
			if df < 0 {
				df = a.dest(o.jf, pc, after, labelAddr, nextAcc, nextRej)
			}
			st, sf := uint8(dt-pc-1), uint8(df-pc-1)
			if o.useX {
				out = append(out, bpf.JumpIfX{Cond: o.cond, SkipTrue: st, SkipFalse: sf})
			} else {
				out = append(out, bpf.JumpIf{Cond: o.cond, Val: o.val, SkipTrue: st, SkipFalse: sf})
			}
			if o.trampT {
				out = append(out, tramp(o.jt, tp))
			}
			if o.trampF {
				out = append(out, tramp(o.jf, fp))
			}
		}
	}
	return out
}
