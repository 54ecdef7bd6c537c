// Command concord is Concord's command-line tool.
//
//	concord new DIR [flags]                  write a new module that serves a Concord service
//	concord proto-deps [-skip-concord] DIR   write the include directory for buf or protoc
//	concord node [flags]                     run a standalone coordination node
//	concord status [-addr URL] [-json] [-watch] [SECTION]
//	                                         print the status of an app or node, or one section
//	                                         (nodes, services, locks, limits, breakers, transactions, messages)
//	concord lock hold|release NAME [-for D]  have an app hold one of its locks for an operator, or let it go
//	concord dead-letters CMD [SEQ|-all]      list, replay or discard dead letters (CMD), through an
//	                                         app's admin listener, or the NATS servers with -nats
//	concord config CMD NAME [ARGS]           get, set, history or rollback an app's live config (CMD)
//	concord version                          print the version
package main
