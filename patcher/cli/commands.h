/* SPDX-License-Identifier: MIT */
/*
 * commands.h - the vmpoke sub-commands patcher/main.c dispatches to.
 * Each takes the arguments after the command name (argv[0] is the command
 * name itself, as getopt expects) and returns the process exit code
 * (enum vmpoke_exit).
 */
#ifndef VMPOKE_COMMANDS_H
#define VMPOKE_COMMANDS_H

int cmd_run(int argc, char **argv);		/* vmm/cmd_run.c */
int cmd_syms(int argc, char **argv);		/* vmm/cmd_syms.c */
int cmd_doctor(int argc, char **argv);		/* vmm/cmd_doctor.c */
int cmd_bench_sync(int argc, char **argv);	/* vmm/cmd_bench_sync.c */
int cmd_bench_poke(int argc, char **argv);	/* patcher/ */
int cmd_bench_flip(int argc, char **argv);	/* patcher/cli/cmd_bench_flip.c */
int cmd_bench_probe(int argc, char **argv);	/* patcher/cli/cmd_bench_probe.c */
int cmd_torture(int argc, char **argv);		/* patcher/ */
int cmd_campaign(int argc, char **argv);		/* patcher/cli/cmd_campaign.c */

#endif /* VMPOKE_COMMANDS_H */
