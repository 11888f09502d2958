/*
 * tiny.S - the smallest image vmpoke accepts: a seed of fuzz_elf that
 * is quick to mutate (make fuzz-seeds links it two ways).  A function
 * symbol with a size, a local label, an object, a bss symbol.
 */
	.text
	.globl	_start
	.type	_start, @function
_start:
	call	tiny_fn
1:	jmp	1b
	.size	_start, . - _start

	.type	tiny_fn, @function
tiny_fn:
	nopl	0(%rax,%rax,1)
	ret
	.size	tiny_fn, . - tiny_fn

	.data
	.globl	tiny_obj
	.type	tiny_obj, @object
tiny_obj:
	.quad	0x4b4f50564d504b56
	.size	tiny_obj, 8

	.bss
	.type	tiny_bss, @object
tiny_bss:
	.zero	4096
	.size	tiny_bss, 4096

	.section .note.GNU-stack, "", @progbits
