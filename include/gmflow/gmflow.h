/* gmflow/gmflow.h -- the whole public API in one include.
 *
 * Every public header of include/gmflow/ is listed here (tests/umbrella.sh checks it); a program
 * may as well include only the modules it uses.
 */
#ifndef GMFLOW_GMFLOW_H
#define GMFLOW_GMFLOW_H

#include "gmflow/clsflow.h"
#include "gmflow/common.h"
#include "gmflow/dataset.h"
#include "gmflow/events.h"
#include "gmflow/flow.h"
#include "gmflow/flowio.h"
#include "gmflow/gauss.h"
#include "gmflow/idx.h"
#include "gmflow/io.h"
#include "gmflow/nn.h"
#include "gmflow/ode.h"
#include "gmflow/outset.h"
#include "gmflow/par.h"
#include "gmflow/project.h"
#include "gmflow/sqloss.h"
#include "gmflow/stationary.h"
#include "gmflow/toy.h"
#include "gmflow/train.h"
#include "gmflow/trainio.h"
#include "gmflow/traj.h"
#include "gmflow/version.h"

#endif
