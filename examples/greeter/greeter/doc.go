// Package greeter implements the example GreeterService.
package greeter
