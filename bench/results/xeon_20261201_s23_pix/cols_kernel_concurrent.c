#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "nn_internal.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static float *fa(size_t n,float lo){float*p=aligned_alloc(64,(n*4+63)/64*64);for(size_t e=0;e<n;e++)p[e]=lo+(float)rand()/RAND_MAX;return p;}
static size_t B=64,d=784,K=20,L=9,W;
static float *X[2],*F,*S2,*U,*mu,*sg,*s2,*muW,*dal;
static int mode; static double res[2];
static pthread_barrier_t bar;
static void *run(void *a){ int t=(int)(size_t)a; cpu_set_t cs; CPU_ZERO(&cs); CPU_SET(t,&cs); pthread_setaffinity_np(pthread_self(),sizeof cs,&cs);
  double acc[400]; size_t k0,k1,c0,c1;
  if(mode==0){k0=t?10:0;k1=t?20:10;c0=0;c1=d;} else {k0=0;k1=K;c0=t?384:0;c1=t?784:384;}
  pthread_barrier_wait(&bar);
  double best=1e9;
  for(int r=0;r<5;r++){ pthread_barrier_wait(&bar); double t0=now();
    for(int q=0;q<500;q++) gmf_nn_kern_tn_update_cols(B,d,c0,c1,L,k0,k1,X[t],d,F,W,S2,K,U,mu,sg,s2,muW,dal,1e-6f,1e-6f,1e-6f,acc);
    double tt=(now()-t0)/500; if(tt<best)best=tt;}
  res[t]=best; return NULL;}
int main(int argc,char**argv){ W=K*(L+1); int conc=argc>1;
  X[0]=fa(B*d,-.5f);X[1]=fa(B*d,-.5f);F=fa(B*W,-.5f);S2=fa(B*K,-.5f);U=fa(K*L*d,-.5f);mu=fa(K*d,-.5f);sg=fa(K*d,.5f);s2=fa(K*d,0);muW=fa(W*d,0);dal=fa(K*L,-.5f);
  for(int rr=0;rr<2;rr++) for(mode=0;mode<2;mode++){
    if(conc){ pthread_barrier_init(&bar,NULL,2); pthread_t th[2]; for(size_t t=0;t<2;t++)pthread_create(&th[t],NULL,run,(void*)t); for(int t=0;t<2;t++)pthread_join(th[t],NULL); pthread_barrier_destroy(&bar);
      printf("concurrent %s: t0 %.1f us t1 %.1f us\n",mode?"pixels":"comps",1e6*res[0],1e6*res[1]);}
    else { for(int t=0;t<2;t++){ pthread_barrier_init(&bar,NULL,1); pthread_t th; pthread_create(&th,NULL,run,(void*)(size_t)t); pthread_join(th,NULL); pthread_barrier_destroy(&bar);} 
      printf("alone %s: t0 %.1f us t1 %.1f us\n",mode?"pixels":"comps",1e6*res[0],1e6*res[1]);}
  }
  return 0;}
