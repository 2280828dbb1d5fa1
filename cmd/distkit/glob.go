package main

import (
	"errors"
	"strings"
)

// glob is a PATTERN of the list verbs, matched against keys and names as
// the user gave them (not their encoded Redis form), byte by byte, with
// Redis's glob syntax: '*' any bytes, '?' one byte, '[abc]', '[^a]' or
// '[!a]', '[a-z]', and '\' to take the next byte literally.
type glob struct{ p string }

func compileGlob(p string) (glob, error) {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 == len(p) {
				return glob{}, errors.New("trailing backslash")
			}
			i++
		case '[':
			j := i + 1
			if j < len(p) && (p[j] == '^' || p[j] == '!') {
				j++
			}
			if j < len(p) && p[j] == ']' {
				j++
			}
			for ; j < len(p) && p[j] != ']'; j++ {
				if p[j] == '\\' {
					j++
				}
			}
			if j >= len(p) {
				return glob{}, errors.New("unclosed '['")
			}
			i = j
		}
	}
	return glob{p}, nil
}

// literalPrefix is the part of the pattern before its first
// metacharacter, unescaped: every match starts with it, so it narrows the
// server-side scan.
func (g glob) literalPrefix() string {
	var b strings.Builder
	for i := 0; i < len(g.p); i++ {
		switch c := g.p[i]; c {
		case '*', '?', '[':
			return b.String()
		case '\\':
			i++
			b.WriteByte(g.p[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (g glob) match(s string) bool { return globMatch(g.p, s) }

func globMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(p, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			if s == "" {
				return false
			}
			ok, rest := matchClass(p, s[0])
			if !ok {
				return false
			}
			p, s = rest, s[1:]
		case '\\':
			p = p[1:]
			fallthrough
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return s == ""
}

// matchClass matches c against the class at the start of p ("[...]",
// validated by compileGlob) and returns the pattern after it.
func matchClass(p string, c byte) (bool, string) {
	i := 1
	neg := p[i] == '^' || p[i] == '!'
	if neg {
		i++
	}
	found := false
	for first := true; first || p[i] != ']'; first = false {
		lo := p[i]
		if lo == '\\' {
			i++
			lo = p[i]
		}
		i++
		hi := lo
		if p[i] == '-' && p[i+1] != ']' {
			hi = p[i+1]
			if hi == '\\' {
				i++
				hi = p[i+1]
			}
			i += 2
		}
		if lo > hi { // as Redis: a reversed range is the same range
			lo, hi = hi, lo
		}
		if lo <= c && c <= hi {
			found = true
		}
	}
	return found != neg, p[i+1:]
}
