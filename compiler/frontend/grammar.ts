/**
 * The Attune grammar (Ohm), the whole syntax of the language: `parse.ts` builds the parser from
 * it. Kept as a string in a module so the compiler needs no file access (it loads over http and in
 * a browser).
 * @module
 */

/** The Ohm source of the Attune grammar. */
export const GRAMMAR_SOURCE: string = String.raw`Attune {
  Program = Def+ end

  Def = "def" ident "(" ListOf<Param, ","> ")" RetType? Block

  Param = ident ":" Type "=" Literal   -- typedDefault
        | ident ":" Type               -- typed
        | ident "=" Literal            -- default
        | ident                        -- bare

  Type = ScalarKind? "[" ListOf<Exp, ","> "]"   -- tensor
       | ScalarKind                            -- scalar

  ScalarKind = ("float" | "int" | "bool") ~alnum

  RetType = "->" "(" NonemptyListOf<Type, ","> ")"  -- many
          | "->" Type                                -- one

  Block = "{" Stmt* "}"

  Stmt = "return" NonemptyListOf<Exp, ","> ";"?            -- return
       | "repeat" Exp Block ";"?                            -- repeat
       | ident "[" NonemptyListOf<Exp, ","> "]" "=" Exp ";"? -- indexed
       | ident "," NonemptyListOf<ident, ","> "=" Exp ";"?   -- destructure
       | ident "=" Exp ";"?                                 -- assign

  Exp = Exp "or" AndExp  -- or
      | AndExp

  AndExp = AndExp "and" NotExp  -- and
         | NotExp

  NotExp = "not" NotExp  -- not
         | CmpExp

  CmpExp = AddExp cmpOp AddExp  -- cmp
         | AddExp

  cmpOp = "<=" | ">=" | "==" | "!=" | "<" | ">"

  AddExp = AddExp "+" MulExp  -- add
         | AddExp "-" MulExp  -- sub
         | MulExp

  MulExp = MulExp mulOp UnaryExp  -- mul
         | UnaryExp

  mulOp = "//" | "*" | "/" | "%" | "@" | dotOp

  dotOp = "." ~digit

  UnaryExp = "-" UnaryExp  -- neg
           | PowExp

  PowExp = PostfixExp "^" UnaryExp  -- pow
         | PostfixExp

  PostfixExp = PostfixExp "[" NonemptyListOf<Subscript, ","> "]"  -- index
             | PostfixExp transposeOp                       -- transpose
             | Primary

  Subscript = Exp? ":" Exp?  -- slice
            | Exp

  transposeOp = "^T" ~alnum

  Primary = "(" Exp ")"                                       -- paren
          | "[" ListOf<Exp, ","> "]"                          -- list
          | ident "[" NonemptyListOf<ident, ","> "]" "(" Exp ")" -- reduce
          | ident "(" ListOf<Arg, ","> ")"                    -- call
          | number
          | ident

  Arg = ident "=" ~"=" Exp  -- keyword
      | Exp                 -- positional

  Literal = "-"? number  -- number
          | ident        -- name

  keyword = ("def" | "return" | "repeat" | "and" | "or" | "not") ~alnum

  ident (a name) = ~keyword (letter | "_") (alnum | "_")*

  number (a number) = digit+ ("." digit+)? (("e" | "E") ("+" | "-")? digit+)?

  space += comment
  comment = "#" (~"\n" any)*
}
`;
