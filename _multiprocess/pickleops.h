/*
 * pickleops.h -- the pickle opcodes that plainpickle.c writes and
 * plainunpickle.c reads: those of plain data (None, bool, int, float, str,
 * bytes, list, tuple, dict) in protocols 2 to 5, with the memo and stack
 * opcodes that go with them.  Values from the pickle format (PEP 307,
 * 3154 and 574), spelt as char constants like pickletools shows them.
 */
#ifndef MULTIPROCESS_PICKLEOPS_H
#define MULTIPROCESS_PICKLEOPS_H

/* framing */
#define OP_PROTO            '\x80'
#define OP_FRAME            '\x95'
#define OP_STOP             '.'

/* scalars */
#define OP_NONE             'N'
#define OP_NEWTRUE          '\x88'
#define OP_NEWFALSE         '\x89'
#define OP_BININT1          'K'
#define OP_BININT2          'M'
#define OP_BININT           'J'
#define OP_LONG1            '\x8a'
#define OP_BINFLOAT         'G'
#define OP_SHORT_BINUNICODE '\x8c'
#define OP_BINUNICODE       'X'
#define OP_BINUNICODE8      '\x8d'
#define OP_SHORT_BINBYTES   'C'
#define OP_BINBYTES         'B'
#define OP_BINBYTES8        '\x8e'

/* containers */
#define OP_EMPTY_LIST       ']'
#define OP_APPEND           'a'
#define OP_APPENDS          'e'
#define OP_EMPTY_DICT       '}'
#define OP_SETITEM          's'
#define OP_SETITEMS         'u'
#define OP_EMPTY_TUPLE      ')'
#define OP_TUPLE1           '\x85'
#define OP_TUPLE2           '\x86'
#define OP_TUPLE3           '\x87'
#define OP_TUPLE            't'

/* stack and memo */
#define OP_MARK             '('
#define OP_POP              '0'
#define OP_POP_MARK         '1'
#define OP_MEMOIZE          '\x94'
#define OP_BINPUT           'q'
#define OP_LONG_BINPUT      'r'
#define OP_BINGET           'h'
#define OP_LONG_BINGET      'j'

/* not plain: seen only to give up early */
#define OP_STACK_GLOBAL     '\x93'

#endif /* MULTIPROCESS_PICKLEOPS_H */
