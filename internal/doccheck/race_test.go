//go:build race

package doccheck

func init() { raceBuild = true }
