// Package doccheck holds the test that builds every Go snippet of the
// README and of the package documentation, so that documentation cannot
// drift from the API. It has no code of its own.
package doccheck
