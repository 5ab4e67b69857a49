/* fault.h -- internal: the fault-injection test hooks of the writers (gmflow/outset.h). */
#ifndef GMFLOW_IO_FAULT_H
#define GMFLOW_IO_FAULT_H

/* One commit point of the process.  Returns 0 normally, or the errno to simulate (ENOSPC) at
 * the point chosen by GMFLOW_TEST_FAIL_WRITE; kills the process (SIGKILL) at the point chosen
 * by GMFLOW_TEST_CRASH_WRITE. */
int gmf_io_fault_point(void);

#endif
